-- Routing reads its own writes across nodes. Every change to what routes
-- where (a subscription created, deleted or auto-removed) increments the
-- one routing version in the transaction that makes the change, and stamps
-- the changed subscriptions with it. The transaction that stores a group
-- of events reads the version (one row by its key); when it has moved
-- since the node's routing table was built, the node reads the
-- subscriptions stamped after its own version and routes the group again.
CREATE TABLE routing_version (
    id INTEGER PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL
);
INSERT INTO routing_version (id, version) VALUES (1, 0);
ALTER TABLE subscriptions ADD COLUMN route_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX subscriptions_route_version ON subscriptions (route_version);

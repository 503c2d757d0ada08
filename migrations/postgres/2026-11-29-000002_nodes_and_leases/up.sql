-- Nodes sharing one database, and the lease each endpoint is owned under.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY NOT NULL,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL
);
ALTER TABLE endpoints ADD COLUMN owner_node TEXT;
ALTER TABLE endpoints ADD COLUMN lease_expires_at TIMESTAMP;
CREATE INDEX endpoints_owner ON endpoints (owner_node);

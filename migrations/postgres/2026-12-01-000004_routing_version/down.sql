DROP INDEX subscriptions_route_version;
ALTER TABLE subscriptions DROP COLUMN route_version;
DROP TABLE routing_version;

DROP INDEX deliveries_event;
DROP INDEX deliveries_subscription;
ALTER TABLE attempts DROP COLUMN response_excerpt;

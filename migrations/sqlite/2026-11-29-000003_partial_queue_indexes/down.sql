DROP INDEX deliveries_dead;
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_queue ON deliveries (endpoint_id, status, id);

DROP INDEX deliveries_event_legacy;
CREATE INDEX deliveries_event ON deliveries (event_id);

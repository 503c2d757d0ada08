ALTER TABLE deliveries DROP COLUMN first_excerpt;
ALTER TABLE deliveries DROP COLUMN first_duration_ms;
ALTER TABLE deliveries DROP COLUMN first_status_code;

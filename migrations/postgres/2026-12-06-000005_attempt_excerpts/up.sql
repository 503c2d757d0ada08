-- Self-service history (DESIGN.md section 6). Each logged attempt keeps at
-- most the first 1 KiB of the endpoint's answer, as text.
ALTER TABLE attempts ADD COLUMN response_excerpt TEXT;
-- A subscription's deliveries in id (creation) order: its delivery list,
-- newest first, and its catch-up feed, oldest first.
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
-- An event's fan-out (the operators' event lookup).
CREATE INDEX deliveries_event ON deliveries (event_id);

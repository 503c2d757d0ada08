-- A delivery's id is now derived from its event's id (src/ids.rs): the
-- deliveries of an event are a range of the primary key, and no index entry
-- on event_id is written per delivery. Rows whose ids are spelled otherwise
-- (written by earlier releases) stay findable by event through this partial
-- index, which holds only them; new deliveries add nothing to it.
DROP INDEX deliveries_event;
CREATE INDEX deliveries_event_legacy ON deliveries (event_id)
    WHERE substr(id, 1, 30) <> substr(event_id, 1, 30);

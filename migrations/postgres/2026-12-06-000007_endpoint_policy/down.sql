ALTER TABLE endpoints DROP COLUMN policy_updated_at;
ALTER TABLE endpoints DROP COLUMN timeout_ms;
ALTER TABLE endpoints DROP COLUMN max_per_second;
ALTER TABLE endpoints DROP COLUMN max_in_flight;
ALTER TABLE endpoints DROP COLUMN operator_paused;

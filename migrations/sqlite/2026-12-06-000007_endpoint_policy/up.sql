-- An operator's policy for each endpoint (PATCH /internal/v1/endpoints/{id}):
-- the operator's hold and overrides of the global delivery settings (NULL:
-- the global default). policy_updated_at is when it last changed, so that a
-- node that missed the change notification still applies it.
ALTER TABLE endpoints ADD COLUMN operator_paused BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE endpoints ADD COLUMN max_in_flight INTEGER NULL;
ALTER TABLE endpoints ADD COLUMN max_per_second INTEGER NULL;
ALTER TABLE endpoints ADD COLUMN timeout_ms BIGINT NULL;
ALTER TABLE endpoints ADD COLUMN policy_updated_at TIMESTAMP NULL;

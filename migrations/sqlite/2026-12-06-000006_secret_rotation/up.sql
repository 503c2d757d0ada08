-- Secret rotation (PUT /v1/subscription/{id}/secret): the secret it
-- replaced keeps signing, beside the new one, until previous_secret_until;
-- secret_rotated_at is when the subscriber last rotated it.
ALTER TABLE subscriptions ADD COLUMN previous_secret TEXT NULL;
ALTER TABLE subscriptions ADD COLUMN previous_secret_until TIMESTAMP NULL;
ALTER TABLE subscriptions ADD COLUMN secret_rotated_at TIMESTAMP NULL;

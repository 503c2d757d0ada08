ALTER TABLE subscriptions DROP COLUMN secret_rotated_at;
ALTER TABLE subscriptions DROP COLUMN previous_secret_until;
ALTER TABLE subscriptions DROP COLUMN previous_secret;

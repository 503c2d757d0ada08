CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    marketplace_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE event_types (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    state TEXT NOT NULL DEFAULT 'healthy',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failed_verifications INTEGER NOT NULL DEFAULT 0,
    last_success_at TIMESTAMP,
    last_failure_at TIMESTAMP,
    last_failure_reason TEXT,
    next_verification_at TIMESTAMP,
    dead_at TIMESTAMP,
    dead_reason TEXT
);

CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    marketplace_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    endpoint_id BIGINT NOT NULL REFERENCES endpoints(id),
    secret TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_modified TIMESTAMP NOT NULL,
    deactivated_at TIMESTAMP,
    deactivation_reason TEXT
);
CREATE INDEX subscriptions_owner ON subscriptions (marketplace_id, user_id, active);
CREATE INDEX subscriptions_endpoint ON subscriptions (endpoint_id);

CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    marketplace_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT,
    delivery_count INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);
-- Only keyed events are indexed; ids are time-ordered (UUIDv7), so the
-- retention cleanup needs no time index.
CREATE UNIQUE INDEX events_idempotency ON events (idempotency_key, marketplace_id)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL REFERENCES events(id),
    subscription_id BIGINT NOT NULL,
    endpoint_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- The one index written per delivery: an endpoint's queue in order. Every
-- other lookup goes by the time-ordered primary key.
CREATE INDEX deliveries_queue ON deliveries (endpoint_id, status, id);

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    delivery_id TEXT NOT NULL,
    endpoint_id BIGINT NOT NULL,
    attempted_at TIMESTAMP NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
CREATE INDEX attempts_time ON attempts (attempted_at);

-- Lifecycle notices (DESIGN.md section 9): what happened to an endpoint
-- (failing, paused, recovered, dead) or its subscriptions (expiring,
-- auto-removed), listed at GET /internal/v1/notices oldest first. The id is
-- time-ordered (a UUIDv7, the same as the event that carries the notice to
-- the operator webhook, when one is set); body is the notice as JSON.
CREATE TABLE notices (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    endpoint_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

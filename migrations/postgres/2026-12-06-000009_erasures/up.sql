-- The audit trail of erasures by data subject (POST /internal/v1/erasure,
-- DESIGN.md section 9): who asked, when, for which marketplace, when it
-- finished and what it did. It holds NO personal data: not the user id,
-- nothing of the erased payloads. completed_at is NULL while an erasure
-- runs (or if the node stopped before it finished: ask again).
CREATE TABLE erasures (
    id TEXT PRIMARY KEY NOT NULL,
    requested_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP NULL,
    requester TEXT NOT NULL,
    marketplace_id BIGINT NOT NULL,
    events_erased BIGINT NOT NULL DEFAULT 0,
    deliveries_cancelled BIGINT NOT NULL DEFAULT 0,
    attempts_cleared BIGINT NOT NULL DEFAULT 0
);

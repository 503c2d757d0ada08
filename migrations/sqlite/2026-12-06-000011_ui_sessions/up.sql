-- Sessions of the web console (/ui/) and the subscriber portal (/portal/),
-- DESIGN.md section 8. The browser holds a random id in an HttpOnly,
-- SameSite=Strict cookie; only its SHA-256 is stored here. token_hash is
-- the hash of the token signed in with (the internal token, or the
-- subscriber's API token), checked again on every request, so that a
-- changed token ends its sessions. csrf is the token every form that
-- changes something must carry. A session ends at expires_at, or at
-- sign-out (its row is deleted).
CREATE TABLE ui_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    audience TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);

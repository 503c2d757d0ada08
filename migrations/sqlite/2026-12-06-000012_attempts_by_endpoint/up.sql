-- An endpoint's recent failed attempts, newest first (the console's
-- endpoint page, DESIGN.md section 8), without scanning every attempt of
-- the last hour. Attempts are logged for failures and retries only (a
-- first-try success is kept on its delivery's row), so this index costs
-- one more entry per logged attempt.
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, attempted_at);

-- A delivery that succeeded at its first attempt keeps that attempt on its
-- own row (the endpoint's status code, the time it took and the first
-- 1 KiB of its answer; attempted at `updated_at`) instead of an `attempts`
-- row with its two index entries: the common case costs one UPDATE of the
-- delivery, as before attempts had excerpts. A resend moves it into
-- `attempts` first. NULL: the attempts are all in `attempts`.
ALTER TABLE deliveries ADD COLUMN first_status_code INTEGER NULL;
ALTER TABLE deliveries ADD COLUMN first_duration_ms BIGINT NULL;
ALTER TABLE deliveries ADD COLUMN first_excerpt TEXT NULL;

-- 004_rate_limits: per-user token buckets of the generation rate limits
-- (SPEC §4; ratelimit.c does the arithmetic, the store makes each
-- read-modify-write one transaction holding the row lock). `bucket` is the
-- key (the user id); `tokens` the units left at `updated_at` (ms),
-- refilled lazily on the next take. A missing row is a full bucket.
CREATE TABLE rate_limits (
    bucket     TEXT COLLATE "C" PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL
);

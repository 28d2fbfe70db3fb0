-- 005_rate_limits: per-user token buckets of the generation rate limits
-- (SPEC §4; ratelimit.c does the arithmetic, the store makes each
-- read-modify-write one write transaction). `bucket` is the key (the user
-- id); `tokens` the units left at `updated_at` (ms), refilled lazily on
-- the next take. A missing row is a full bucket.
CREATE TABLE rate_limits (
    bucket     TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at INTEGER NOT NULL
);

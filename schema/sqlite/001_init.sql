-- 001_init: users and credentials, the token ledger, generations with their
-- queue state, idempotency keys and the durable event log (SPEC §2–§6).
-- Runs inside one transaction (store_sqlite.c); times are ms since the epoch.

CREATE TABLE users (
    id                     TEXT PRIMARY KEY,
    email                  TEXT NOT NULL COLLATE NOCASE UNIQUE,
    name                   TEXT NOT NULL DEFAULT '',
    password_hash          TEXT,
    token_balance          INTEGER NOT NULL DEFAULT 0 CHECK (token_balance >= 0),
    total_tokens_purchased INTEGER NOT NULL DEFAULT 0,
    total_tokens_used      INTEGER NOT NULL DEFAULT 0,
    free_tokens_granted    INTEGER NOT NULL DEFAULT 0,
    plan                   TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro')),
    role                   TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at             INTEGER NOT NULL
);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '',
    key_hash     TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The ledger. generation_id has no foreign key on purpose: deleting a
-- generation keeps its ledger rows. UNIQUE (generation_id, kind) makes a
-- generation chargeable once and refundable at most once (NULLs are distinct,
-- so grants and purchases are unaffected).
CREATE TABLE token_transactions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL
                  CHECK (kind IN ('grant', 'purchase', 'charge', 'refund', 'adjustment')),
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    generation_id TEXT,
    reason        TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (generation_id, kind)
);
CREATE INDEX token_transactions_user ON token_transactions (user_id, id);

CREATE TABLE generations (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status              TEXT NOT NULL
                        CHECK (status IN ('pending', 'processing', 'completed', 'failed',
                                          'cancelled')),
    product_images      TEXT NOT NULL DEFAULT '[]', -- JSON arrays of URLs
    model_images        TEXT NOT NULL DEFAULT '[]',
    result_images       TEXT NOT NULL DEFAULT '[]',
    prompt              TEXT NOT NULL DEFAULT '',
    custom_prompt       TEXT,
    model               TEXT NOT NULL,
    style               TEXT NOT NULL,
    quality             TEXT NOT NULL,
    aspect_ratio        TEXT NOT NULL,
    guidance_scale      REAL NOT NULL,
    num_inference_steps INTEGER NOT NULL,
    strength            REAL NOT NULL,
    seed                INTEGER NOT NULL,
    priority            INTEGER NOT NULL DEFAULT 0,
    tokens_used         INTEGER NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    retry_count         INTEGER NOT NULL DEFAULT 0,
    progress            INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    stage               TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    completed_at        INTEGER,
    processing_time     INTEGER,
    error               TEXT,
    batch_id            TEXT,
    retry_of            TEXT,
    -- queue state, internal
    queued_at           INTEGER, -- first time it entered the queue (FIFO key)
    retry_at            INTEGER, -- not claimable before this
    lease_owner         TEXT,    -- worker id while claimed
    lease_expires       INTEGER
);
-- per-user lists, newest first (ids are time-sortable), with and without a
-- status filter; stats for "this month"
CREATE INDEX generations_user ON generations (user_id, id);
CREATE INDEX generations_user_status ON generations (user_id, status, id);
CREATE INDEX generations_user_created ON generations (user_id, created_at);
-- claim order and queue positions: high priority first, then FIFO
CREATE INDEX generations_claim ON generations (priority DESC, queued_at, id)
    WHERE status = 'processing' AND stage = 'queued' AND lease_owner IS NULL;
CREATE INDEX generations_retry ON generations (retry_at)
    WHERE status = 'processing' AND stage = 'queued' AND lease_owner IS NULL
      AND retry_at IS NOT NULL;
-- sweeping expired leases, releasing a worker's leases, expiring pending ones
CREATE INDEX generations_lease ON generations (lease_expires)
    WHERE lease_owner IS NOT NULL;
CREATE INDEX generations_lease_owner ON generations (lease_owner)
    WHERE lease_owner IS NOT NULL;
CREATE INDEX generations_pending ON generations (created_at)
    WHERE status = 'pending';
CREATE INDEX generations_status ON generations (status);

-- Idempotency-Key per user, kept 24 h (older rows are ignored, replaced on
-- reuse, and deleted by the sweep).
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     TEXT NOT NULL,
    http_status  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The durable event log behind SSE streams (SPEC §6). AUTOINCREMENT keeps ids
-- strictly increasing and never reused, so Last-Event-ID resumes exactly.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL,
    generation_id TEXT,
    type          TEXT NOT NULL CHECK (type IN ('generation', 'balance')),
    data          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX events_user ON events (user_id, id);
CREATE INDEX events_generation ON events (generation_id, id) WHERE generation_id IS NOT NULL;

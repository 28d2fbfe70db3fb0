-- The Node.js comparison app's own tables (server.mjs --schema), beside
-- nothing else in their database: what such an app would define for the
-- same create — the balance with its CHECK, keys by hash, the generation,
-- an append-only ledger and event log, each with the per-user index its
-- listings need.
CREATE TABLE IF NOT EXISTS cmp_users (
    id                TEXT PRIMARY KEY,
    token_balance     INTEGER NOT NULL CHECK (token_balance >= 0),
    total_tokens_used INTEGER NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS cmp_api_keys (
    key_hash   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES cmp_users (id) ON DELETE CASCADE,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS cmp_generations (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES cmp_users (id) ON DELETE CASCADE,
    status         TEXT NOT NULL,
    product_images JSONB NOT NULL,
    prompt         TEXT NOT NULL,
    model          TEXT NOT NULL,
    style          TEXT NOT NULL,
    quality        TEXT NOT NULL,
    aspect_ratio   TEXT NOT NULL,
    tokens_used    INTEGER NOT NULL,
    progress       INTEGER NOT NULL DEFAULT 0,
    stage          TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cmp_generations_user ON cmp_generations (user_id, created_at);
CREATE TABLE IF NOT EXISTS cmp_token_transactions (
    id            BIGSERIAL PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES cmp_users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    generation_id TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cmp_token_transactions_user ON cmp_token_transactions (user_id, id);
CREATE TABLE IF NOT EXISTS cmp_events (
    id            BIGSERIAL PRIMARY KEY,
    user_id       TEXT NOT NULL,
    generation_id TEXT,
    type          TEXT NOT NULL,
    data          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cmp_events_user ON cmp_events (user_id, id);

-- 007_batches: a batch of creates charged in one transaction (SPEC §4
-- "Batches"). The row keeps what the batch was made of: its owner, when,
-- how many items and their generation ids in item order (a JSON array);
-- the counts by status and the tokens held are read from the items'
-- generations (generations.batch_id, indexed here), so they are never out
-- of step with the records. A deleted item leaves generation_ids but no
-- longer counts.
CREATE TABLE batches (
    id             TEXT COLLATE "C" PRIMARY KEY,
    user_id        TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    total          INTEGER NOT NULL CHECK (total BETWEEN 1 AND 20),
    generation_ids TEXT NOT NULL
);
CREATE INDEX generations_batch ON generations (batch_id) WHERE batch_id IS NOT NULL;

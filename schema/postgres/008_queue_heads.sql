-- 008_queue_heads: each user's queued generations in claim order, so the
-- fair claim can find the first ready row of every user who is under the
-- running cap in a few index probes per user (a loose index scan) instead
-- of walking the rows of capped users ahead of them (SPEC §4 "Priority").
CREATE INDEX generations_user_queued ON generations (user_id, priority DESC, queued_at, id)
    WHERE status = 'processing' AND stage = 'queued' AND lease_owner IS NULL;

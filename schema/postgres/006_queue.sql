-- 006_queue: fair claims and cheap queue figures (SPEC §4 "Priority").
-- Each user's leased (running) generations, counted inside every claim for
-- the per-user running cap; the live worker processes and their slots, for
-- GET /api/queue's `workers` (a heartbeat each process renews; a row whose
-- heartbeat is older than a few seconds is a process that is gone).
CREATE INDEX generations_user_leased ON generations (user_id)
    WHERE lease_owner IS NOT NULL;
CREATE TABLE queue_workers (
    process_id TEXT PRIMARY KEY,
    slots      INTEGER NOT NULL,
    seen_at    BIGINT NOT NULL
);

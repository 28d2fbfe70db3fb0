-- 011_queue_depth: how many generations are queued at each priority, kept
-- by triggers, so a queue position is a sum over a few rows less the rows
-- behind it at its own priority, not a count of every row ahead: one queued
-- at the back of 10,000 is placed in a few index probes inside the write
-- that queues it (SPEC §4 queuePosition). "Queued" is QUEUED_WHERE in
-- store_sqlite_gen.c.
CREATE TABLE queue_depth (
    priority INTEGER PRIMARY KEY,
    queued   INTEGER NOT NULL
);
INSERT INTO queue_depth (priority, queued)
    SELECT priority, COUNT(*) FROM generations
    WHERE status = 'processing' AND stage = 'queued' AND lease_owner IS NULL
    GROUP BY priority;
CREATE TRIGGER queue_depth_insert AFTER INSERT ON generations
    WHEN NEW.status = 'processing' AND NEW.stage = 'queued' AND NEW.lease_owner IS NULL
BEGIN
    INSERT INTO queue_depth (priority, queued) VALUES (NEW.priority, 1)
        ON CONFLICT (priority) DO UPDATE SET queued = queued + 1;
END;
CREATE TRIGGER queue_depth_delete AFTER DELETE ON generations
    WHEN OLD.status = 'processing' AND OLD.stage = 'queued' AND OLD.lease_owner IS NULL
BEGIN
    UPDATE queue_depth SET queued = queued - 1 WHERE priority = OLD.priority;
END;
-- An update that leaves the queue, enters it, or both (a new priority).
CREATE TRIGGER queue_depth_leave AFTER UPDATE OF status, stage, lease_owner, priority ON generations
    WHEN OLD.status = 'processing' AND OLD.stage = 'queued' AND OLD.lease_owner IS NULL
BEGIN
    UPDATE queue_depth SET queued = queued - 1 WHERE priority = OLD.priority;
END;
CREATE TRIGGER queue_depth_enter AFTER UPDATE OF status, stage, lease_owner, priority ON generations
    WHEN NEW.status = 'processing' AND NEW.stage = 'queued' AND NEW.lease_owner IS NULL
BEGIN
    INSERT INTO queue_depth (priority, queued) VALUES (NEW.priority, 1)
        ON CONFLICT (priority) DO UPDATE SET queued = queued + 1;
END;

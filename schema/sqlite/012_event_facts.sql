-- 012_event_facts: what a stream needs to know of a generation event
-- without parsing its JSON again: the queue position its record shows (0:
-- none) and whether its status is terminal (api_gen.c). Rows from before
-- are filled from their data.
ALTER TABLE events ADD COLUMN queue_position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN terminal INTEGER NOT NULL DEFAULT 0;
UPDATE events
    SET queue_position = COALESCE(json_extract(data, '$.queuePosition'), 0),
        terminal = COALESCE(json_extract(data, '$.status') IN ('completed', 'failed', 'cancelled'), 0)
    WHERE type = 'generation' AND json_valid(data);

-- 006_templates: saved create bodies per user (SPEC §4 "Templates"). `body`
-- is the create body as the client sent it (JSON text), validated like a
-- create when saved; a generate from it merges overrides into it and goes
-- through the create path again. Listed newest first by id (ids are
-- time-sortable), so (user_id, id) is the index. (005 is taken by another
-- branch; the runner applies any version missing from schema_migrations.)
CREATE TABLE templates (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX templates_user ON templates (user_id, id);

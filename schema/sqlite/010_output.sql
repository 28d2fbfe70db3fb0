-- 010_output: parameters.background ("auto" | "transparent" | "opaque") and
-- parameters.output_format ("jpeg" | "png" | "webp") of a generation (SPEC
-- §4). '' when not given (and for records from before this migration): the
-- defaults, an opaque JPEG.
ALTER TABLE generations ADD COLUMN background TEXT NOT NULL DEFAULT '';
ALTER TABLE generations ADD COLUMN output_format TEXT NOT NULL DEFAULT '';

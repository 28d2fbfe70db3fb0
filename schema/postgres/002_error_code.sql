-- 002_error_code: errorCode of a failed or cancelled generation (SPEC §4,
-- §7): CANCELLED, EXPIRED, PROVIDER_REJECTED, PROVIDER_TRANSIENT,
-- PROVIDER_ERROR, INPUT_UNAVAILABLE. NULL while none (and for records that
-- ended before this migration).
ALTER TABLE generations ADD COLUMN error_code TEXT;

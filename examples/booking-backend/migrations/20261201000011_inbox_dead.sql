-- Authentic webhooks that can never be processed (a NUL in a string, an
-- identifier longer than any gateway issues) are acknowledged and kept as
-- dead, for a person, instead of failing on every redelivery.
ALTER TABLE webhook_inbox DROP CONSTRAINT IF EXISTS webhook_inbox_status_check;
ALTER TABLE webhook_inbox ADD CONSTRAINT webhook_inbox_status_check
    CHECK (status IN ('received', 'processed', 'failed', 'dead'));

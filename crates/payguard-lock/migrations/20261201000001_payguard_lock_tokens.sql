-- Fencing tokens come from one sequence, drawn under the row lock of the
-- acquisition that gets them: they grow in commit order per lock name, and
-- they keep growing when a row is deleted and created again (a counter in
-- the row would restart at 1). The sequence starts past every token already
-- handed out.
CREATE SEQUENCE IF NOT EXISTS payguard_lock_tokens AS bigint;
SELECT setval('payguard_lock_tokens',
              GREATEST((SELECT max(token) FROM payguard_locks), 0) + 1,
              false);

-- For scripts (`payguard lock run` exports PAYGUARD_LOCK_NAME and
-- PAYGUARD_FENCING_TOKEN): raises unless the acquisition with this token
-- still holds a live lease. It takes FOR KEY SHARE on the lock row, which a
-- takeover (FOR UPDATE) cannot pass until the calling transaction ends, but
-- which the holder's own renewal (an UPDATE of non-key columns) can: a long
-- fenced transaction never makes its own lease lapse. A row another session
-- is locking this instant (a taker looking at it) is waited for, within the
-- calling transaction's lock_timeout.
CREATE OR REPLACE FUNCTION payguard_lock_fence(lock_name text, fencing_token bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM payguard_locks
      WHERE name = lock_name AND token = fencing_token
        AND owner IS NOT NULL AND expires_at > clock_timestamp()
        FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payguard lock % is no longer held with fencing token %', lock_name, fencing_token
            USING ERRCODE = 'PGL01', HINT = 'another run took the lock over: roll back';
    END IF;
END
$$;

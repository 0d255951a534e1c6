-- payguard-lock: one row per lock name. Decisions use only name, owner,
-- token and the expiry columns, all judged by the database clock; the
-- holder_* columns are for people reading `payguard lock status`.
CREATE TABLE IF NOT EXISTS payguard_locks (
    name        text PRIMARY KEY,
    -- "<process id>:<nonce>" of the current holder; NULL once released.
    owner       text,
    -- The fencing token: bumped under the row lock on every acquisition.
    token       bigint NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    -- lock_at_most_for: renewals never extend past this.
    hold_until  timestamptz,
    holder_host text,
    holder_pid  integer
) WITH (fillfactor = 50);

-- Scheduled-job slots that ran: at most once per slot, whatever the holders.
CREATE TABLE IF NOT EXISTS payguard_lock_slots (
    lock_name text NOT NULL,
    slot      timestamptz NOT NULL,
    token     bigint NOT NULL,
    ran_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (lock_name, slot)
);

-- References sent to gateways for work done under a lock: the first holder
-- to record an item fixes its reference, and every later holder reuses it.
CREATE TABLE IF NOT EXISTS payguard_lock_intents (
    lock_name  text NOT NULL,
    item       text NOT NULL,
    reference  text NOT NULL,
    token      bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (lock_name, item)
);

-- For scripts (`payguard lock run` exports PAYGUARD_LOCK_NAME and
-- PAYGUARD_FENCING_TOKEN): raises unless the acquisition with this token
-- still holds a live lease, and keeps it from being taken over until the
-- calling transaction ends. Call it first in the transaction that makes
-- the protected change.
CREATE OR REPLACE FUNCTION payguard_lock_fence(lock_name text, fencing_token bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM payguard_locks
      WHERE name = lock_name AND token = fencing_token
        AND owner IS NOT NULL AND expires_at > clock_timestamp()
        FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payguard lock % is no longer held with fencing token %', lock_name, fencing_token
            USING ERRCODE = 'PGL01', HINT = 'another run took the lock over: roll back';
    END IF;
END
$$;

-- Who may send a booking's refund right now: only the holder of a live
-- claim calls the gateway, so two cancellations (or a cancellation and an
-- orphaned payment) never send two refunds. A claim that outlives its lease
-- (a crash mid-call) may be taken by a retry or the reconciliation job,
-- which checks the gateway before sending.
ALTER TABLE bookings
    ADD COLUMN IF NOT EXISTS refund_claim text,
    ADD COLUMN IF NOT EXISTS refund_claimed_until timestamptz;

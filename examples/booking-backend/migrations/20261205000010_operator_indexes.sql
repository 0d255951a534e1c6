-- Reconciliation reads what it must look at through these partial indexes
-- (one per branch of its query) instead of scanning every booking.
CREATE INDEX IF NOT EXISTS bookings_payout_pending
    ON bookings (id) WHERE payout_status = 'pending';
CREATE INDEX IF NOT EXISTS bookings_refund_requested
    ON bookings (id) WHERE refund_status = 'requested';
CREATE INDEX IF NOT EXISTS bookings_unsettled_charges
    ON bookings (hold_expires_at)
    WHERE payment_reference IS NOT NULL AND escrow = 'none' AND refund_status IS NULL;
-- Webhooks waiting for a redelivery or for a person, counted for the
-- operator's gauges.
CREATE INDEX IF NOT EXISTS webhook_inbox_unsettled
    ON webhook_inbox (status) WHERE status IN ('failed', 'dead');

-- Reconciliation backs off per booking: how often it asked the gateway
-- about the charge, and when it may ask again.
ALTER TABLE bookings
    ADD COLUMN IF NOT EXISTS gateway_checks integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS next_check_at timestamptz;

-- Unpaid holds per guest email are counted on every new hold.
CREATE INDEX IF NOT EXISTS bookings_guest_holds
    ON bookings ((lower(guest->>'email')))
    WHERE status = 'pending_payment';

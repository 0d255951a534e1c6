CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE IF NOT EXISTS listings (
    id                  text PRIMARY KEY,
    title               text NOT NULL,
    nightly_rate_minor  bigint NOT NULL CHECK (nightly_rate_minor > 0),
    currency            text NOT NULL,
    host                jsonb NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS bookings (
    id                text PRIMARY KEY,
    listing_id        text NOT NULL REFERENCES listings (id),
    guest             jsonb NOT NULL,
    check_in          date NOT NULL,
    check_out         date NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    currency          text NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending_payment', 'confirmed', 'cancelled', 'expired', 'completed')),
    hold_expires_at   timestamptz NOT NULL,
    gateway           text,
    payment_reference text UNIQUE,
    authorization_url text,
    escrow            text NOT NULL DEFAULT 'none' CHECK (escrow IN ('none', 'held', 'released', 'refunded')),
    payout_status     text NOT NULL DEFAULT 'none' CHECK (payout_status IN ('none', 'pending', 'paid', 'failed', 'reversed')),
    payout_reference  text UNIQUE,
    payout_token      bigint,
    refund_status     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (check_out > check_in),
    -- The invariant: no two live bookings of one listing share a night.
    CONSTRAINT bookings_no_double_booking
        EXCLUDE USING gist (listing_id WITH =, daterange(check_in, check_out) WITH &&)
        WHERE (status IN ('pending_payment', 'confirmed', 'completed'))
);

CREATE INDEX IF NOT EXISTS bookings_pending_holds ON bookings (hold_expires_at) WHERE status = 'pending_payment';
CREATE INDEX IF NOT EXISTS bookings_escrow_due ON bookings (check_in) WHERE status = 'confirmed' AND escrow = 'held';

-- Every webhook received: the raw payload, and what became of it.
CREATE TABLE IF NOT EXISTS webhook_inbox (
    provider     text NOT NULL,
    event_id     text NOT NULL,
    event        text NOT NULL,
    payload      bytea NOT NULL,
    status       text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    PRIMARY KEY (provider, event_id)
);

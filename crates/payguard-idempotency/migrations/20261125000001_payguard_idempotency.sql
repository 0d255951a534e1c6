-- payguard-idempotency: one row per (scope, key), keyed by its SHA-256.
CREATE TABLE IF NOT EXISTS payguard_idempotency (
    scope_key           bytea PRIMARY KEY,
    fingerprint         bytea NOT NULL,
    fingerprint_version smallint NOT NULL,
    -- 0 = in progress (claimed), 1 = completed (response stored)
    state               smallint NOT NULL,
    owner_token         bigint NOT NULL,
    attempt             integer NOT NULL,
    lease_expires_at    timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    response_status     smallint,
    response_headers    bytea,
    response_body       bytea
);

CREATE INDEX IF NOT EXISTS payguard_idempotency_expires_at ON payguard_idempotency (expires_at);

-- Owner tokens only go up, across all keys and takeovers.
CREATE SEQUENCE IF NOT EXISTS payguard_idempotency_owner_token;

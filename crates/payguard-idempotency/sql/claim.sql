WITH existing AS (
    SELECT owner_token, attempt, state, fingerprint, fingerprint_version, lease_expires_at,
           response_status, response_headers, response_body,
           (expires_at <= clock_timestamp() AND (state = 1 OR lease_expires_at <= clock_timestamp()))
           OR (state = 0 AND lease_expires_at <= clock_timestamp()
               AND fingerprint = $2::bytea AND fingerprint_version = $3::smallint) AS claimable
      FROM payguard_idempotency
     WHERE scope_key = $1::bytea
),
free AS (
    SELECT scope_key FROM payguard_idempotency
     WHERE scope_key = $1::bytea
       AND ((expires_at <= clock_timestamp() AND (state = 1 OR lease_expires_at <= clock_timestamp()))
            OR (state = 0 AND lease_expires_at <= clock_timestamp()
                AND fingerprint = $2::bytea AND fingerprint_version = $3::smallint))
       FOR UPDATE SKIP LOCKED
),
taken AS (
    UPDATE payguard_idempotency AS c SET
        fingerprint = $2::bytea,
        fingerprint_version = $3::smallint,
        state = 0,
        owner_token = nextval('payguard_idempotency_owner_token'),
        attempt = CASE WHEN c.expires_at <= clock_timestamp() THEN 1 ELSE c.attempt + 1 END,
        lease_expires_at = clock_timestamp() + make_interval(secs => $4::float8 / 1000),
        expires_at = CASE WHEN c.expires_at <= clock_timestamp()
                          THEN clock_timestamp() + make_interval(secs => $5::float8 / 1000)
                          ELSE c.expires_at END,
        created_at = CASE WHEN c.expires_at <= clock_timestamp() THEN clock_timestamp() ELSE c.created_at END,
        completed_at = NULL, response_status = NULL, response_headers = NULL, response_body = NULL
      FROM free
     WHERE c.scope_key = free.scope_key
    RETURNING c.owner_token, c.attempt, c.lease_expires_at
),
created AS (
    INSERT INTO payguard_idempotency
        (scope_key, fingerprint, fingerprint_version, state, owner_token, attempt,
         lease_expires_at, expires_at, created_at)
    SELECT $1::bytea, $2::bytea, $3::smallint, 0, nextval('payguard_idempotency_owner_token'), 1,
           clock_timestamp() + make_interval(secs => $4::float8 / 1000),
           clock_timestamp() + make_interval(secs => $5::float8 / 1000),
           clock_timestamp()
     WHERE NOT EXISTS (SELECT 1 FROM existing)
    ON CONFLICT (scope_key) DO NOTHING
    RETURNING owner_token, attempt, lease_expires_at
),
won AS (
    SELECT * FROM taken
    UNION ALL
    SELECT * FROM created
)
SELECT true AS claimed, owner_token, attempt, NULL::smallint AS state, NULL::bytea AS fingerprint,
       NULL::smallint AS fingerprint_version,
       GREATEST(0, (EXTRACT(EPOCH FROM lease_expires_at - clock_timestamp()) * 1000)::bigint) AS lease_ms,
       NULL::smallint AS response_status, NULL::bytea AS response_headers, NULL::bytea AS response_body
  FROM won
UNION ALL
SELECT false, owner_token, attempt, state, fingerprint, fingerprint_version,
       GREATEST(0, (EXTRACT(EPOCH FROM lease_expires_at - clock_timestamp()) * 1000)::bigint),
       response_status, response_headers, response_body
  FROM existing
 WHERE NOT claimable AND NOT EXISTS (SELECT 1 FROM won)

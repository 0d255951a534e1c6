UPDATE payguard_idempotency
    SET state = 1, completed_at = clock_timestamp(), response_status = $3, response_headers = $4, response_body = $5
  WHERE scope_key = $1 AND owner_token = $2 AND state = 0
RETURNING 1

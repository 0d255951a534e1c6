//! The demo's run: listings, racing guests, payments, forgeries, a cancellation, faults and an outage, escrow release.

#![allow(clippy::indexing_slicing, clippy::print_stdout, clippy::print_stderr)]

use super::*;

impl Demo {
    pub(super) async fn script(
        &self,
        args: &DemoArgs,
        log_path: &std::path::Path,
    ) -> Result<bool, Failed> {
        let mut tally = Tally::default();
        self.wait_ready().await?;
        self.control(
            reqwest::Method::PUT,
            "/webhooks",
            json!({"duplicates": 1, "duplicate_spacing_ms": 50, "delay_ms": {"min": 0, "max": 150},
                   "out_of_order_window_ms": 100, "time_scale": 0.001}),
        )
        .await?;
        let noise = json!([
            {"name": "lost-transfer", "match": {"provider": "paystack", "method": "POST", "path": "/transfer"},
             "times": 3, "timeout": {"mode": "apply_then_drop"}},
            {"name": "recipient-429", "match": {"provider": "paystack", "path": "/transferrecipient"},
             "rate_limit": {"rps": 3, "burst": 2}},
            {"name": "verify-5xx", "match": {"method": "GET", "path_prefix": "/paystack/transfer/verify"},
             "times": 4, "error": {"status": [500, 503]}},
            {"name": "fw-5xx", "match": {"provider": "flutterwave", "method": "GET"},
             "times": 4, "error": {"status": [502], "probability": 0.5}}
        ]);
        let with_noise = |first: Value| {
            let mut rules = vec![first];
            rules.extend(noise.as_array().cloned().unwrap_or_default());
            json!({ "rules": rules })
        };
        self.control(
            reqwest::Method::PUT,
            "/faults",
            with_noise(json!({"name": "init-5xx", "match": {"provider": "paystack", "path": "/transaction/initialize"},
                              "times": 2, "error": {"status": [502, 503], "probability": 0.3}})),
        )
        .await?;
        self.step("listings");
        let mut listings = Vec::new();
        for n in 0..LISTINGS + OUTAGE_LISTINGS {
            listings.push(self.listing(n).await?);
        }

        self.step("racing guests for the same nights");
        let mut guest = 0;
        for (n, listing) in listings.iter().take(LISTINGS).enumerate() {
            let racers: Vec<_> = (0..RACERS)
                .map(|racer| {
                    guest += 1;
                    let url = format!("{}/v1/bookings", self.backend(n + racer));
                    let body = self.booking_body(listing, guest, 0, 2);
                    let key = new_id("idem_");
                    let http = self.http.clone();
                    tokio::spawn(async move {
                        let response = http
                            .post(&url)
                            .header("idempotency-key", &key)
                            .json(&body)
                            .send()
                            .await
                            .map_err(|error| error.to_string())?;
                        let status = response.status().as_u16();
                        let answer: Value = response.json().await.unwrap_or(Value::Null);
                        Ok::<_, String>((status, answer, url, body, key))
                    })
                })
                .collect();
            for racer in racers {
                let (status, answer, url, body, key) =
                    racer.await.map_err(|error| error.to_string())??;
                match status {
                    201 => {
                        // A client retry with the same key replays the answer.
                        if tally.replays == 0 {
                            let (status, headers, replay) =
                                self.post(&url, &body, Some(&key)).await?;
                            if status == 201
                                && headers.contains_key("idempotent-replayed")
                                && replay == answer
                            {
                                tally.replays += 1;
                            }
                        }
                        tally.created.push(answer);
                    }
                    409 if answer["code"] == "dates_unavailable" => tally.conflicts += 1,
                    other => return Err(format!("booking answered {other}: {answer}")),
                }
            }
            // A later stay on the same listing, not yet due for payout.
            guest += 1;
            let (status, _, answer) = self
                .post(
                    &format!("{}/v1/bookings", self.backend(n)),
                    &self.booking_body(listing, guest, 5, 3),
                    Some(&new_id("idem_")),
                )
                .await?;
            if status != 201 {
                return Err(format!("booking answered {status}: {answer}"));
            }
            tally.created.push(answer);
        }

        self.step("guests pay (some cards fail)");
        for (index, booking) in tally.created.iter().enumerate() {
            let reference = booking["payment"]["reference"].as_str().unwrap_or_default();
            let outcome = if index % 9 == 4 { "failed" } else { "success" };
            if outcome == "failed" {
                tally
                    .unpaid
                    .push(booking["id"].as_str().unwrap_or_default().to_owned());
            }
            self.control(
                reqwest::Method::POST,
                &format!("/charges/{reference}/complete"),
                json!({"outcome": outcome}),
            )
            .await?;
        }

        if args.kill_one && self.backends.len() > 1 {
            let mut children = self.children.lock().await;
            if let Some(child) = children.last_mut() {
                child
                    .start_kill()
                    .map_err(|error| format!("cannot kill an instance: {error}"))?;
                let _ = child.wait().await;
                self.live
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                tally.killed += 1;
            }
        }

        self.step("forged webhooks");
        let target = tally
            .unpaid
            .first()
            .and_then(|id| {
                tally
                    .created
                    .iter()
                    .find(|booking| booking["id"] == id.as_str())
            })
            .cloned();
        if let Some(target) = target {
            tally.forged_target = target["id"].as_str().map(str::to_owned);
            for n in 0..FORGED {
                let body = json!({"event": "charge.success", "data": {
                    "reference": target["payment"]["reference"], "amount": target["amount_minor"],
                    "currency": target["currency"], "status": "success"}})
                .to_string();
                let signature = match n % 3 {
                    0 => Some(sign("sk_test_not_the_key", &body)),
                    1 => Some(sign(
                        gateway_sim::DEFAULT_PAYSTACK_SECRET_KEY,
                        &format!("{body} "),
                    )),
                    _ => None,
                };
                let mut request = self
                    .http
                    .post(format!("{}/v1/webhooks/paystack", self.backend(n)))
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(signature) = signature {
                    request = request.header("x-paystack-signature", signature);
                }
                tally.forged_sent += 1;
                if request
                    .send()
                    .await
                    .map_err(|error| error.to_string())?
                    .status()
                    == 401
                {
                    tally.forged_rejected += 1;
                }
            }
        }

        self.step("cancellations and refunds");
        tokio::time::sleep(Duration::from_millis(800)).await;
        let later = tally
            .created
            .iter()
            .filter(|booking| booking["check_in"] == self.date(5).as_str())
            .filter(|booking| !tally.unpaid.iter().any(|id| booking["id"] == id.as_str()))
            .find_map(|booking| booking["id"].as_str().map(str::to_owned));
        if let Some(id) = later {
            // As a client should: a 503 says when to try again (the refund
            // is blocked while Paystack's breaker is open, say).
            let key = new_id("idem_");
            let mut answer = (0, HeaderMap::new(), Value::Null);
            for _ in 0..10 {
                answer = self
                    .post(
                        &format!("{}/v1/bookings/{id}/cancel", self.backend(1)),
                        &json!({}),
                        Some(&key),
                    )
                    .await?;
                if answer.0 != 503 {
                    break;
                }
                let wait = answer
                    .1
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            let (status, _, answer) = answer;
            if status != 200 {
                return Err(format!(
                    "cancelling a paid booking answered {status}: {answer}"
                ));
            }
            tally.cancelled_paid = Some(id);
        }

        self.step("Paystack outage: the breaker trips, Flutterwave takes the charges");
        self.control(
            reqwest::Method::PUT,
            "/faults",
            with_noise(json!({"name": "paystack-outage", "match": {"provider": "paystack", "path": "/transaction/initialize"},
                              "times": 40, "error": {"status": [503]}})),
        )
        .await?;
        for (n, listing) in listings.iter().enumerate().skip(LISTINGS) {
            for slot in 0..3 {
                guest += 1;
                let (status, _, answer) = self
                    .post(
                        &format!("{}/v1/bookings", self.backend(n)),
                        &self.booking_body(listing, guest, i64::from(slot) * 3, 2),
                        Some(&new_id("idem_")),
                    )
                    .await?;
                if status != 201 {
                    return Err(format!(
                        "booking during the outage answered {status}: {answer}"
                    ));
                }
                let reference = answer["payment"]["reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.control(
                    reqwest::Method::POST,
                    &format!("/charges/{reference}/complete"),
                    json!({"outcome": "success"}),
                )
                .await?;
                tally.created.push(answer);
            }
        }
        self.control(reqwest::Method::PUT, "/faults", json!({ "rules": noise }))
            .await?;

        self.step("escrow release: paying hosts");
        let due: Vec<String> = tally
            .created
            .iter()
            .filter(|booking| booking["check_in"] == self.date(0).as_str())
            .filter(|booking| !tally.unpaid.iter().any(|id| booking["id"] == id.as_str()))
            .filter_map(|booking| booking["id"].as_str().map(str::to_owned))
            .collect();
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut reversal_done = false;
        loop {
            let mut settled = 0;
            for id in &due {
                let booking = self
                    .get(&format!("{}/v1/bookings/{id}", self.backend(0)))
                    .await?;
                if matches!(booking["payout_status"].as_str(), Some("paid" | "reversed")) {
                    settled += 1;
                }
                if !reversal_done && booking["payout_status"] == "paid" {
                    // The bank reverses one payout; a late duplicate of its
                    // success must not resurrect it.
                    let reference = booking["payout_reference"].as_str().unwrap_or_default();
                    self.control(
                        reqwest::Method::POST,
                        &format!("/transfers/{reference}/settle"),
                        json!({"outcome": "reversed"}),
                    )
                    .await?;
                    tally.reversed = Some(id.clone());
                    reversal_done = true;
                }
            }
            self.progress.set_message(format!(
                "escrow release: {settled}/{} payouts settled",
                due.len()
            ));
            if settled == due.len() && reversal_done {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Replay the reversed payout's old success, late.
        if let Some(id) = &tally.reversed {
            let reference = format!("escrow_{id}");
            if let Some(delivery) = self.sim.deliveries().into_iter().find(|delivery| {
                delivery.reference == reference && delivery.event == "transfer.success"
            }) {
                self.control(
                    reqwest::Method::POST,
                    &format!("/webhooks/deliveries/{}/replay", delivery.id),
                    json!({}),
                )
                .await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;

        self.step("checking the invariants");
        let ok = self.check(&tally, &due, log_path).await?;
        Ok(ok)
    }
}

/// The `x-paystack-signature` of `body` under `key` (payguard-webhook signs).
fn sign(key: &str, body: &str) -> String {
    Verifier::builder(WebhookProvider::Paystack)
        .secret(key)
        .build()
        .ok()
        .and_then(|signer| {
            signer
                .sign_at(body.as_bytes(), std::time::UNIX_EPOCH, None)
                .ok()
        })
        .and_then(|headers| headers.into_iter().next())
        .and_then(|(_, value)| value.to_str().ok().map(str::to_owned))
        .unwrap_or_default()
}

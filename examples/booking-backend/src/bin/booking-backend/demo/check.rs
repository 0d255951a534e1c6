//! The demo's invariants, read from the simulator's books and the backend's answers.

#![allow(clippy::indexing_slicing, clippy::print_stdout, clippy::print_stderr)]

use super::*;

impl Demo {
    pub(super) async fn check(
        &self,
        tally: &Tally,
        due: &[String],
        log_path: &std::path::Path,
    ) -> Result<bool, Failed> {
        let mut bookings = Vec::new();
        for booking in &tally.created {
            let id = booking["id"].as_str().unwrap_or_default();
            bookings.push(
                self.get(&format!("{}/v1/bookings/{id}", self.backend(0)))
                    .await?,
            );
        }
        let state = self.sim.snapshot();
        let metrics = self.metrics().await;

        // Double bookings: live bookings of one listing sharing a night.
        let mut double_bookings = 0;
        for (index, a) in bookings.iter().enumerate() {
            for b in bookings.iter().skip(index + 1) {
                let live = |booking: &Value| {
                    matches!(
                        booking["status"].as_str(),
                        Some("pending_payment" | "confirmed" | "completed")
                    )
                };
                if a["listing_id"] == b["listing_id"]
                    && live(a)
                    && live(b)
                    && a["check_in"].as_str() < b["check_out"].as_str()
                    && b["check_in"].as_str() < a["check_out"].as_str()
                {
                    double_bookings += 1;
                }
            }
        }

        // Payouts: each due booking paid exactly once, nothing else paid.
        let transfers: HashMap<&str, &gateway_sim::Transfer> = state
            .transfers
            .iter()
            .map(|transfer| (transfer.reference.as_str(), transfer))
            .collect();
        let mut payouts_wrong = 0;
        let mut problems: Vec<String> = Vec::new();
        let mut payout_requests = 0;
        for booking in &bookings {
            let id = booking["id"].as_str().unwrap_or_default();
            let reference = format!("escrow_{id}");
            let transfer = transfers.get(reference.as_str());
            payout_requests += transfer.map_or(0, |transfer| transfer.create_requests);
            let should_pay = due.iter().any(|due| due == id) && booking["status"] != "cancelled";
            let paid_right = match transfer {
                Some(transfer) => {
                    let expected = if tally.reversed.as_deref() == Some(id) {
                        ("reversed", "REVERSED", "reversed")
                    } else {
                        ("success", "SUCCESSFUL", "paid")
                    };
                    should_pay
                        && transfer.amount == booking["amount_minor"].as_i64().unwrap_or(-1)
                        && (transfer.status == expected.0 || transfer.status == expected.1)
                        && booking["payout_status"] == expected.2
                }
                None => !should_pay,
            };
            if !paid_right {
                payouts_wrong += 1;
                problems.push(format!(
                    "payout of {id}: booking {} / payout {}, gateway transfer {:?}",
                    booking["status"],
                    booking["payout_status"],
                    transfer.map(|transfer| (&transfer.status, transfer.amount))
                ));
            }
        }
        let stray_transfers = state
            .transfers
            .iter()
            .filter(|transfer| {
                !bookings.iter().any(|booking| {
                    Some(transfer.reference.as_str()) == booking["payout_reference"].as_str()
                })
            })
            .count();

        // Every charged booking confirmed (or cancelled and refunded).
        let mut charged_not_confirmed = 0;
        for charge in state
            .charges
            .iter()
            .filter(|charge| charge.status == "success" || charge.status == "successful")
        {
            let Some(booking) = bookings
                .iter()
                .find(|booking| booking["payment"]["reference"] == charge.reference.as_str())
            else {
                continue;
            };
            let honoured = matches!(booking["status"].as_str(), Some("confirmed" | "completed"))
                || (booking["status"] == "cancelled" && booking["refund_status"].is_string());
            if !honoured {
                charged_not_confirmed += 1;
                problems.push(format!(
                    "charge {} paid, booking is {}",
                    charge.reference, booking["status"]
                ));
            }
        }

        // Webhooks: every delivered event applied once, duplicates ignored.
        let deliveries = self.sim.deliveries();
        let delivered = deliveries
            .iter()
            .filter(|delivery| delivery.delivered)
            .count();
        let copies: usize = deliveries
            .iter()
            .map(|delivery| {
                delivery
                    .attempts
                    .iter()
                    .filter(|attempt| attempt.outcome.starts_with('2'))
                    .count()
            })
            .sum();
        let applied = metric(&metrics, "booking_webhooks_total", "outcome=\"applied\"");
        let duplicates = metric(&metrics, "booking_webhooks_total", "outcome=\"duplicate\"");
        let forged_target_untouched = match &tally.forged_target {
            Some(id) => bookings
                .iter()
                .find(|booking| booking["id"] == id.as_str())
                .is_some_and(|booking| {
                    booking["status"] != "confirmed" && booking["status"] != "completed"
                }),
            None => true,
        };

        // Personal data in the logs.
        let redactor = Redactor::new();
        let logs = std::fs::read_to_string(log_path).unwrap_or_default();
        let pii_lines = logs
            .lines()
            .filter(|line| redactor.redact(line) != *line)
            .count();
        let guest_emails_in_logs = bookings
            .iter()
            .filter(|booking| {
                booking["guest"]["email"]
                    .as_str()
                    .is_some_and(|email| logs.contains(email))
            })
            .count();

        let rows: Vec<(&str, String, bool)> = vec![
            (
                "double bookings",
                double_bookings.to_string(),
                double_bookings == 0,
            ),
            (
                "due payouts made exactly once",
                format!(
                    "{} due, {} wrong, {} stray transfers",
                    due.len(),
                    payouts_wrong,
                    stray_transfers
                ),
                payouts_wrong == 0 && stray_transfers == 0,
            ),
            (
                "charged bookings confirmed",
                format!("{charged_not_confirmed} not confirmed"),
                charged_not_confirmed == 0,
            ),
            (
                "webhooks applied once",
                format!(
                    "{delivered} events, {applied} applied, {copies} deliveries, {duplicates} duplicates ignored"
                ),
                applied == delivered as u64 && duplicates + applied >= copies as u64,
            ),
            (
                "forged webhooks rejected",
                format!("{}/{} rejected", tally.forged_rejected, tally.forged_sent),
                tally.forged_sent > 0
                    && tally.forged_rejected == tally.forged_sent
                    && forged_target_untouched,
            ),
            (
                "personal data in logs",
                format!("{pii_lines} lines, {guest_emails_in_logs} guest emails"),
                pii_lines == 0 && guest_emails_in_logs == 0 && !logs.is_empty(),
            ),
            (
                "dates contested",
                format!(
                    "{} booked, {} refused (409), {} replayed",
                    tally.created.len(),
                    tally.conflicts,
                    tally.replays
                ),
                tally.conflicts == LISTINGS * (RACERS - 1) && tally.replays == 1,
            ),
        ];
        let retries = metric(&metrics, "booking_gateway_retries_total", "");
        let trips = metric(
            &metrics,
            "payguard_breaker_transitions_total",
            "to=\"open\"",
        );
        let failovers = metric(&metrics, "booking_gateway_failovers_total", "");
        let flutterwave_charges = state
            .charges
            .iter()
            .filter(|charge| charge.provider == gateway_sim::Provider::Flutterwave)
            .count();
        self.progress.finish_and_clear();
        println!(
            "\nbooking-backend demo: {} instance(s), seed {}\n",
            self.backends.len(),
            self.seed
        );
        println!("{:<34} {:<62} holds", "invariant", "measured");
        for (name, measured, holds) in &rows {
            println!(
                "{name:<34} {measured:<62} {}",
                if *holds { "yes" } else { "NO" }
            );
        }
        println!(
            "\ngateway retries {retries}, breaker trips {trips}, fail-overs to Flutterwave {failovers} \
             ({flutterwave_charges} charges there), payout create requests {payout_requests} for {} transfers, \
             refunds {}, instances killed with SIGKILL {}, logs {}",
            state.transfers.len(),
            state.refunds.len(),
            tally.killed,
            log_path.display()
        );
        for problem in &problems {
            println!("  ! {problem}");
        }
        Ok(rows.iter().all(|(_, _, holds)| *holds))
    }

    /// Every instance's metrics (in-process instances share one registry).
    async fn metrics(&self) -> String {
        let mut text = String::new();
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for backend in &live {
            if let Ok(response) = self.http.get(format!("{backend}/metrics")).send().await
                && let Ok(body) = response.text().await
            {
                text.push_str(&body);
                text.push('\n');
            }
            if self.backends.len() == 1 {
                break;
            }
        }
        text
    }
}

/// Sums a counter's samples whose labels contain `filter`.
fn metric(text: &str, name: &str, filter: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#') && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

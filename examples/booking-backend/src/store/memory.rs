//! One process's store: the same rules as PostgreSQL, checked in Rust
//! under one mutex.

use super::{
    Answer, Attached, Backlog, BookingStore, Cancellation, Confirmation, InboxOutcome, NewHold,
    StoreError, holds_nights, judge_payment, may_cancel, needs_reconciliation, payout_overdue,
    refund_may_become, refund_state,
};
use crate::domain::{Booking, BookingStatus, Escrow, Listing, Payment, PayoutStatus};
use payguard_lock::Fence;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use time::{Date, OffsetDateTime};

/// Bookings in memory: one instance only.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    listings: HashMap<String, Listing>,
    bookings: HashMap<String, Booking>,
    /// (provider, event id) to status and deliveries.
    inbox: HashMap<(String, String), (String, u32)>,
    /// Booking id to the live refund claim and when it lapses.
    refund_claims: HashMap<String, (String, OffsetDateTime)>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn overlaps(&self, listing_id: &str, check_in: Date, check_out: Date, except: &str) -> bool {
        self.bookings.values().any(|other| {
            other.id != except
                && other.listing_id == listing_id
                && holds_nights(other.status)
                && other.check_in < check_out
                && check_in < other.check_out
        })
    }

    fn expire_lapsed(&mut self) -> u64 {
        let now = now();
        let mut expired = 0;
        for booking in self.bookings.values_mut() {
            if booking.status == BookingStatus::PendingPayment && booking.hold_expires_at <= now {
                booking.status = BookingStatus::Expired;
                expired += 1;
            }
        }
        expired
    }

    fn paid_by(&mut self, reference: &str) -> Option<&mut Booking> {
        self.bookings.values_mut().find(|booking| {
            booking
                .payment
                .as_ref()
                .is_some_and(|payment| payment.reference == reference)
        })
    }

    fn set_refund(&mut self, id: &str, status: &str) -> bool {
        let status = refund_state(status);
        let Some(booking) = self.bookings.get_mut(id) else {
            return false;
        };
        if !refund_may_become(booking.refund_status.as_deref(), status) {
            return false;
        }
        booking.refund_status = Some(status.to_owned());
        match status {
            "pending" | "processed" => booking.escrow = Escrow::Refunded,
            "failed" => booking.escrow = Escrow::Held,
            _ => {}
        }
        true
    }
}

fn held(hold: NewHold) -> Booking {
    Booking {
        id: hold.id,
        listing_id: hold.listing_id,
        guest: hold.guest,
        check_in: hold.check_in,
        check_out: hold.check_out,
        amount_minor: hold.amount_minor,
        currency: hold.currency,
        status: BookingStatus::PendingPayment,
        hold_expires_at: now() + hold.hold_for,
        payment: None,
        escrow: Escrow::None,
        payout_status: PayoutStatus::None,
        payout_reference: None,
        refund_status: None,
        gateway_checks: 0,
        next_check_at: None,
    }
}

fn sorted(mut bookings: Vec<Booking>, limit: u32) -> Vec<Booking> {
    bookings.sort_by(|a, b| a.id.cmp(&b.id));
    bookings.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    bookings
}

#[async_trait::async_trait]
impl BookingStore for MemoryStore {
    fn is_shared(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_listing(&self, listing: &Listing) -> Result<(), StoreError> {
        self.state()
            .listings
            .insert(listing.id.clone(), listing.clone());
        Ok(())
    }

    async fn listing(&self, id: &str) -> Result<Option<Listing>, StoreError> {
        Ok(self.state().listings.get(id).cloned())
    }

    async fn place_hold(&self, hold: NewHold) -> Result<Booking, StoreError> {
        let mut state = self.state();
        state.expire_lapsed();
        let email = hold.guest.email.to_lowercase();
        let open = state
            .bookings
            .values()
            .filter(|other| {
                other.status == BookingStatus::PendingPayment
                    && other.guest.email.to_lowercase() == email
            })
            .count();
        if open >= hold.open_holds as usize {
            return Err(StoreError::TooManyHolds);
        }
        if state.overlaps(&hold.listing_id, hold.check_in, hold.check_out, "") {
            return Err(StoreError::DatesUnavailable);
        }
        let booking = held(hold);
        state.bookings.insert(booking.id.clone(), booking.clone());
        Ok(booking)
    }

    async fn attach_payment(
        &self,
        id: &str,
        payment: &Payment,
        _answer: Option<Answer<'_>>,
    ) -> Result<Option<Attached>, StoreError> {
        // One process: the idempotency layer stores the answer after the
        // handler, from the same memory.
        Ok(self.state().bookings.get_mut(id).map(|booking| {
            booking.payment = Some(payment.clone());
            Attached {
                booking: booking.clone(),
                answer: None,
            }
        }))
    }

    async fn release_hold(&self, id: &str) -> Result<(), StoreError> {
        if let Some(booking) = self.state().bookings.get_mut(id)
            && booking.status == BookingStatus::PendingPayment
        {
            booking.status = BookingStatus::Cancelled;
        }
        Ok(())
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        Ok(self.state().bookings.get(id).cloned())
    }

    async fn bookings(&self) -> Result<Vec<Booking>, StoreError> {
        let all = self.state().bookings.values().cloned().collect();
        Ok(sorted(all, u32::MAX))
    }

    async fn list(
        &self,
        status: Option<BookingStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Booking>, StoreError> {
        let page = self
            .state()
            .bookings
            .values()
            .filter(|booking| status.is_none_or(|status| booking.status == status))
            .filter(|booking| after.is_none_or(|after| booking.id.as_str() > after))
            .cloned()
            .collect();
        Ok(sorted(page, limit))
    }

    async fn reconcilable(&self, limit: u32) -> Result<Vec<Booking>, StoreError> {
        let now = now();
        let due = self
            .state()
            .bookings
            .values()
            .filter(|booking| needs_reconciliation(booking, now))
            .cloned()
            .collect();
        Ok(sorted(due, limit))
    }

    async fn charge_checked(&self, id: &str) -> Result<(), StoreError> {
        if let Some(booking) = self.state().bookings.get_mut(id) {
            booking.next_check_at =
                Some(now() + crate::domain::check_backoff(booking.gateway_checks));
            booking.gateway_checks = booking.gateway_checks.saturating_add(1);
        }
        Ok(())
    }

    async fn confirm_payment(
        &self,
        reference: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Confirmation, StoreError> {
        let mut state = self.state();
        let Some(current) = state.paid_by(reference).map(|booking| booking.clone()) else {
            return Ok(Confirmation::Unknown);
        };
        if let Some(outcome) = judge_payment(&current, amount_minor, currency) {
            return Ok(outcome);
        }
        if current.status == BookingStatus::Expired
            && state.overlaps(
                &current.listing_id,
                current.check_in,
                current.check_out,
                &current.id,
            )
        {
            return Ok(Confirmation::Orphaned(current));
        }
        let Some(booking) = state.bookings.get_mut(&current.id) else {
            return Ok(Confirmation::Unknown);
        };
        booking.status = BookingStatus::Confirmed;
        booking.escrow = Escrow::Held;
        Ok(Confirmation::Confirmed(booking.clone()))
    }

    async fn charge_failed(&self, reference: &str) -> Result<Option<Booking>, StoreError> {
        let mut state = self.state();
        Ok(state
            .paid_by(reference)
            .filter(|booking| booking.status == BookingStatus::PendingPayment)
            .map(|booking| {
                booking.status = BookingStatus::Expired;
                booking.clone()
            }))
    }

    async fn expire_holds(&self) -> Result<u64, StoreError> {
        Ok(self.state().expire_lapsed())
    }

    async fn cancel(&self, id: &str) -> Result<Option<Cancellation>, StoreError> {
        let mut state = self.state();
        let Some(booking) = state.bookings.get_mut(id) else {
            return Ok(None);
        };
        if !may_cancel(booking) {
            return Ok(Some(Cancellation::NotCancellable(booking.clone())));
        }
        booking.status = BookingStatus::Cancelled;
        Ok(Some(if booking.escrow == Escrow::Held {
            Cancellation::Refund(booking.clone())
        } else {
            Cancellation::Cancelled(booking.clone())
        }))
    }

    async fn claim_refund(
        &self,
        id: &str,
        claim: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = now();
        let mut state = self.state();
        let State {
            bookings,
            refund_claims,
            ..
        } = &mut *state;
        let Some(booking) = bookings.get_mut(id) else {
            return Ok(false);
        };
        let free = match booking.refund_status.as_deref() {
            None => true,
            Some("requested") => refund_claims.get(id).is_none_or(|(_, until)| *until <= now),
            Some(_) => false,
        };
        if free {
            booking.refund_status = Some("requested".to_owned());
            refund_claims.insert(id.to_owned(), (claim.to_owned(), now + lease));
        }
        Ok(free)
    }

    async fn refund_sent(&self, id: &str, claim: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        let holds = state
            .refund_claims
            .get(id)
            .is_some_and(|(held, _)| held == claim);
        Ok(holds && state.set_refund(id, "pending"))
    }

    async fn release_refund_claim(&self, id: &str, claim: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        if state
            .refund_claims
            .get(id)
            .is_some_and(|(held, _)| held == claim)
        {
            state.refund_claims.remove(id);
        }
        Ok(())
    }

    async fn refund_event(
        &self,
        payment_reference: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(id) = state
            .paid_by(payment_reference)
            .map(|booking| booking.id.clone())
        else {
            return Ok(false);
        };
        Ok(state.set_refund(&id, status))
    }

    async fn due_payouts(&self, hold: Duration, limit: u32) -> Result<Vec<Booking>, StoreError> {
        let due_before = now() - hold;
        let due = self
            .state()
            .bookings
            .values()
            .filter(|booking| {
                booking.payout_status == PayoutStatus::None && payout_overdue(booking, due_before)
            })
            .cloned()
            .collect();
        Ok(sorted(due, limit))
    }

    async fn begin_payout(&self, id: &str, _fence: Option<&Fence>) -> Result<bool, StoreError> {
        Ok(match self.state().bookings.get_mut(id) {
            Some(booking)
                if booking.payout_status == PayoutStatus::None
                    && booking.status == BookingStatus::Confirmed
                    && booking.escrow == Escrow::Held =>
            {
                booking.payout_status = PayoutStatus::Pending;
                booking.payout_reference = Some(Booking::payout_reference_for(id));
                true
            }
            _ => false,
        })
    }

    async fn payout_event(
        &self,
        reference: &str,
        next: PayoutStatus,
    ) -> Result<Option<Booking>, StoreError> {
        let mut state = self.state();
        let Some(booking) = state
            .bookings
            .values_mut()
            .find(|booking| booking.payout_reference.as_deref() == Some(reference))
        else {
            return Ok(None);
        };
        if !booking.payout_status.may_become(next) {
            return Ok(None);
        }
        booking.payout_status = next;
        match next {
            PayoutStatus::Paid => {
                booking.escrow = Escrow::Released;
                booking.status = BookingStatus::Completed;
            }
            PayoutStatus::Reversed => booking.escrow = Escrow::Held,
            _ => {}
        }
        Ok(Some(booking.clone()))
    }

    async fn backlog(
        &self,
        escrow_hold: Duration,
        patience: Duration,
    ) -> Result<Backlog, StoreError> {
        let now = now();
        let state = self.state();
        let count = |rule: &dyn Fn(&Booking) -> bool| -> u64 {
            state
                .bookings
                .values()
                .filter(|booking| rule(booking))
                .count() as u64
        };
        let inbox = |status: &str| -> u64 {
            state
                .inbox
                .values()
                .filter(|(held, _)| held == status)
                .count() as u64
        };
        Ok(Backlog {
            stuck_payouts: count(&|booking| payout_overdue(booking, now - escrow_hold - patience)),
            unsent_refunds: count(&|booking| {
                booking.refund_status.as_deref() == Some("requested")
                    && state
                        .refund_claims
                        .get(&booking.id)
                        .is_none_or(|(_, until)| *until <= now)
            }),
            failed_webhooks: inbox("failed"),
            dead_webhooks: inbox("dead"),
        })
    }

    async fn inbox_receive(
        &self,
        provider: &str,
        event_id: &str,
        _event: &str,
        _payload: &[u8],
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let entry = state
            .inbox
            .entry((provider.to_owned(), event_id.to_owned()))
            .or_insert_with(|| ("received".to_owned(), 0));
        entry.1 += 1;
        Ok(())
    }

    async fn inbox_finish(
        &self,
        provider: &str,
        event_id: &str,
        outcome: InboxOutcome,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self
            .state()
            .inbox
            .get_mut(&(provider.to_owned(), event_id.to_owned()))
        {
            outcome.status().clone_into(&mut entry.0);
        }
        Ok(())
    }
}

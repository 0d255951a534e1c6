//! One conformance suite, two backends: every rule of `BookingStore`
//! (nights never shared, holds per guest, payments, cancellations, refunds
//! claimed once, payouts forward only, what reconciliation looks at) holds
//! the same in memory and on PostgreSQL (where the database itself keeps
//! the nights apart). A rule written twice is proven once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use booking_backend::domain::{
    Booking, BookingStatus, Escrow, Gateway, Guest, Host, Listing, Payment, PayoutStatus,
    parse_date,
};
use booking_backend::store::{
    Backlog, BookingStore, Cancellation, Confirmation, InboxOutcome, MIGRATOR, MemoryStore,
    NewHold, PgStore, PgStoreOptions, StoreError,
};
use payguard_idempotency::PgIdempotencyStore;
use payguard_test_support::TestDb;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Runs `suite` against a memory store and a migrated PostgreSQL store in
/// a fresh database.
async fn on_both<F, Fut>(suite: F)
where
    F: Fn(Arc<dyn BookingStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    suite(Arc::new(MemoryStore::new())).await;
    let db = TestDb::new().await;
    let idempotency = PgIdempotencyStore::new(db.pool().clone());
    idempotency.migrate().await.unwrap();
    MIGRATOR.run(db.pool()).await.unwrap();
    let store = PgStore::new(db.pool().clone(), idempotency, PgStoreOptions::default());
    suite(Arc::new(store)).await;
}

fn listing(id: &str) -> Listing {
    Listing {
        id: id.to_owned(),
        title: "Flat".to_owned(),
        nightly_rate_minor: 100,
        currency: "NGN".to_owned(),
        host: Host {
            name: "Host".to_owned(),
            email: "host@example.com".to_owned(),
            phone: "+2348031234567".to_owned(),
            bank_code: "058".to_owned(),
            account_number: "0123456789".to_owned(),
        },
    }
}

/// A hold of `listing` from day `from` to day `to` of January 2020 for the
/// guest `email`.
fn hold(id: &str, listing: &str, email: &str, from: u8, to: u8) -> NewHold {
    let day = |d: u8| parse_date(&format!("2020-01-{d:02}")).unwrap();
    NewHold {
        id: id.to_owned(),
        listing_id: listing.to_owned(),
        guest: Guest {
            name: "Guest".to_owned(),
            email: email.to_owned(),
            phone: "+2348031234567".to_owned(),
        },
        check_in: day(from),
        check_out: day(to),
        amount_minor: 100 * i64::from(to - from),
        currency: "NGN".to_owned(),
        hold_for: Duration::from_secs(600),
        open_holds: 3,
    }
}

fn payment(reference: &str) -> Payment {
    Payment {
        gateway: Gateway::Paystack,
        reference: reference.to_owned(),
        authorization_url: "http://sim/pay".to_owned(),
    }
}

/// A held booking with its payment attached (reference = id).
async fn held(store: &dyn BookingStore, id: &str, from: u8, to: u8) -> Booking {
    store
        .place_hold(hold(id, "ls_1", &format!("{id}@example.com"), from, to))
        .await
        .unwrap();
    store
        .attach_payment(id, &payment(id), None)
        .await
        .unwrap()
        .unwrap()
        .booking
}

/// A confirmed (paid, money in escrow) booking.
async fn confirmed(store: &dyn BookingStore, id: &str, from: u8, to: u8) -> Booking {
    let booking = held(store, id, from, to).await;
    match store
        .confirm_payment(id, booking.amount_minor, "NGN")
        .await
        .unwrap()
    {
        Confirmation::Confirmed(booking) => booking,
        other => panic!("{id} not confirmed: {other:?}"),
    }
}

async fn status(store: &dyn BookingStore, id: &str) -> Booking {
    store.booking(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn live_bookings_never_share_a_night() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        store.create_listing(&listing("ls_2")).await.unwrap();
        store
            .place_hold(hold("bk_a", "ls_1", "a@example.com", 10, 13))
            .await
            .unwrap();
        for (id, from, to) in [
            ("bk_b", 12, 14),
            ("bk_c", 9, 11),
            ("bk_d", 10, 13),
            ("bk_e", 11, 12),
        ] {
            let refused = store
                .place_hold(hold(id, "ls_1", "b@example.com", from, to))
                .await;
            assert!(
                matches!(refused, Err(StoreError::DatesUnavailable)),
                "{id}: {refused:?}"
            );
        }
        // Departure day is the next guest's arrival day.
        store
            .place_hold(hold("bk_f", "ls_1", "b@example.com", 13, 15))
            .await
            .unwrap();
        store
            .place_hold(hold("bk_g", "ls_1", "c@example.com", 8, 10))
            .await
            .unwrap();
        store
            .place_hold(hold("bk_h", "ls_2", "c@example.com", 10, 13))
            .await
            .unwrap();
        // Cancelled nights are free again.
        assert!(matches!(
            store.cancel("bk_a").await.unwrap(),
            Some(Cancellation::Cancelled(_))
        ));
        store
            .place_hold(hold("bk_i", "ls_1", "d@example.com", 11, 12))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_lapsed_hold_frees_its_nights_and_a_guest_holds_a_bounded_number() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        let mut short = hold("bk_a", "ls_1", "a@example.com", 10, 12);
        short.hold_for = Duration::from_millis(1);
        store.place_hold(short).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .place_hold(hold("bk_b", "ls_1", "b@example.com", 11, 13))
            .await
            .unwrap();
        assert_eq!(status(&*store, "bk_a").await.status, BookingStatus::Expired);

        let limited = |id: &str, day: u8, email: &str| {
            let mut next = hold(id, "ls_1", email, day, day + 1);
            next.open_holds = 2;
            next
        };
        store
            .place_hold(limited("bk_c", 20, "g@example.com"))
            .await
            .unwrap();
        store
            .place_hold(limited("bk_d", 21, "G@Example.com"))
            .await
            .unwrap();
        let third = store.place_hold(limited("bk_e", 22, "g@EXAMPLE.com")).await;
        assert!(matches!(third, Err(StoreError::TooManyHolds)), "{third:?}");
        assert_eq!(
            store.expire_holds().await.unwrap(),
            0,
            "nothing else lapsed"
        );
    })
    .await;
}

#[tokio::test]
async fn payments_confirm_once_and_refuse_what_does_not_match() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        assert_eq!(
            store.confirm_payment("nobody", 100, "NGN").await.unwrap(),
            Confirmation::Unknown
        );
        held(&*store, "bk_a", 10, 12).await;
        assert!(matches!(
            store.confirm_payment("bk_a", 199, "NGN").await.unwrap(),
            Confirmation::Mismatch(_)
        ));
        assert!(matches!(
            store.confirm_payment("bk_a", 200, "GHS").await.unwrap(),
            Confirmation::Mismatch(_)
        ));
        let Confirmation::Confirmed(booking) =
            store.confirm_payment("bk_a", 200, "NGN").await.unwrap()
        else {
            panic!("not confirmed");
        };
        assert_eq!(
            (booking.status, booking.escrow),
            (BookingStatus::Confirmed, Escrow::Held)
        );
        assert!(matches!(
            store.confirm_payment("bk_a", 200, "NGN").await.unwrap(),
            Confirmation::AlreadyConfirmed(_)
        ));

        // Paid after cancelling: the money is orphaned.
        held(&*store, "bk_b", 20, 21).await;
        store.cancel("bk_b").await.unwrap();
        assert!(matches!(
            store.confirm_payment("bk_b", 100, "NGN").await.unwrap(),
            Confirmation::Orphaned(_)
        ));

        // A failed charge frees the nights at once; a later success still
        // confirms while they stay free, and is orphaned once re-let.
        held(&*store, "bk_c", 22, 23).await;
        let released = store.charge_failed("bk_c").await.unwrap().unwrap();
        assert_eq!(released.status, BookingStatus::Expired);
        assert!(store.charge_failed("bk_c").await.unwrap().is_none(), "once");
        assert!(matches!(
            store.confirm_payment("bk_c", 100, "NGN").await.unwrap(),
            Confirmation::Confirmed(_)
        ));
        held(&*store, "bk_d", 24, 25).await;
        store.charge_failed("bk_d").await.unwrap();
        held(&*store, "bk_e", 24, 26).await;
        assert!(matches!(
            store.confirm_payment("bk_d", 100, "NGN").await.unwrap(),
            Confirmation::Orphaned(_)
        ));
    })
    .await;
}

#[tokio::test]
async fn cancellations_refund_what_was_paid_until_the_payout_starts() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        assert!(store.cancel("bk_none").await.unwrap().is_none());
        held(&*store, "bk_a", 10, 11).await;
        assert!(matches!(
            store.cancel("bk_a").await.unwrap(),
            Some(Cancellation::Cancelled(_))
        ));
        confirmed(&*store, "bk_b", 11, 12).await;
        assert!(matches!(
            store.cancel("bk_b").await.unwrap(),
            Some(Cancellation::Refund(_))
        ));
        // Its refund not started yet: the cancellation may be retried.
        assert!(matches!(
            store.cancel("bk_b").await.unwrap(),
            Some(Cancellation::Refund(_))
        ));
        assert!(
            store
                .claim_refund("bk_b", "rc_1", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(store.refund_sent("bk_b", "rc_1").await.unwrap());
        assert!(matches!(
            store.cancel("bk_b").await.unwrap(),
            Some(Cancellation::NotCancellable(_))
        ));
        confirmed(&*store, "bk_c", 12, 13).await;
        assert!(store.begin_payout("bk_c", None).await.unwrap());
        assert!(matches!(
            store.cancel("bk_c").await.unwrap(),
            Some(Cancellation::NotCancellable(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn one_refund_claim_wins_a_race_and_refunds_move_forward_only() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        confirmed(&*store, "bk_a", 10, 11).await;
        store.cancel("bk_a").await.unwrap();
        let racers: Vec<_> = (0..10)
            .map(|racer| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .claim_refund("bk_a", &format!("rc_{racer}"), Duration::from_secs(60))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            winners += usize::from(racer.await.unwrap());
        }
        assert_eq!(winners, 1, "exactly one racer may send the refund");
        assert!(
            !store
                .refund_sent("bk_a", "rc_not_the_winner")
                .await
                .unwrap()
        );

        // A claim released (its gateway call failed) may be taken again.
        confirmed(&*store, "bk_b", 11, 12).await;
        store.cancel("bk_b").await.unwrap();
        assert!(
            store
                .claim_refund("bk_b", "rc_1", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_refund("bk_b", "rc_2", Duration::from_secs(60))
                .await
                .unwrap()
        );
        store.release_refund_claim("bk_b", "rc_1").await.unwrap();
        assert!(
            store
                .claim_refund("bk_b", "rc_2", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !store.refund_sent("bk_b", "rc_1").await.unwrap(),
            "not the holder"
        );
        assert!(store.refund_sent("bk_b", "rc_2").await.unwrap());
        assert_eq!(status(&*store, "bk_b").await.escrow, Escrow::Refunded);
        assert!(store.refund_event("bk_b", "processed").await.unwrap());
        assert!(
            !store.refund_event("bk_b", "failed").await.unwrap(),
            "forward only"
        );
        assert!(
            !store.refund_event("bk_b", "pending").await.unwrap(),
            "forward only"
        );

        // A refund event for a refund never started moves no money.
        confirmed(&*store, "bk_c", 12, 13).await;
        assert!(!store.refund_event("bk_c", "processed").await.unwrap());
        assert_eq!(status(&*store, "bk_c").await.escrow, Escrow::Held);
    })
    .await;
}

#[tokio::test]
async fn payouts_start_once_and_move_forward_only() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        confirmed(&*store, "bk_1", 1, 3).await;
        let due = store
            .due_payouts(Duration::from_secs(3600), 50)
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "January 2020 is long past");
        assert!(store.begin_payout("bk_1", None).await.unwrap());
        assert!(
            !store.begin_payout("bk_1", None).await.unwrap(),
            "a payout starts once"
        );
        assert!(
            store
                .due_payouts(Duration::ZERO, 50)
                .await
                .unwrap()
                .is_empty()
        );
        let reference = "escrow_bk_1";
        assert!(
            store
                .payout_event(reference, PayoutStatus::Reversed)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .payout_event(reference, PayoutStatus::Paid)
                .await
                .unwrap()
                .is_none(),
            "a late success does not resurrect a reversed payout"
        );
        let booking = status(&*store, "bk_1").await;
        assert_eq!(
            (booking.payout_status, booking.escrow),
            (PayoutStatus::Reversed, Escrow::Held)
        );

        confirmed(&*store, "bk_2", 5, 6).await;
        store.begin_payout("bk_2", None).await.unwrap();
        let paid = store
            .payout_event("escrow_bk_2", PayoutStatus::Paid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (paid.status, paid.escrow, paid.payout_status),
            (
                BookingStatus::Completed,
                Escrow::Released,
                PayoutStatus::Paid
            )
        );
        assert!(
            store
                .payout_event("escrow_bk_2", PayoutStatus::Failed)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn reconciliation_looks_at_the_same_bookings() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        held(&*store, "bk_unpaid", 1, 2).await; // may have been paid unheard
        store
            .place_hold(hold("bk_no_payment", "ls_1", "n@example.com", 2, 3))
            .await
            .unwrap();
        confirmed(&*store, "bk_settled", 3, 4).await;
        confirmed(&*store, "bk_payout", 4, 5).await;
        store.begin_payout("bk_payout", None).await.unwrap();
        confirmed(&*store, "bk_refund", 5, 6).await;
        store.cancel("bk_refund").await.unwrap();
        store
            .claim_refund("bk_refund", "rc", Duration::from_secs(60))
            .await
            .unwrap();
        held(&*store, "bk_checked", 6, 7).await;
        store.charge_checked("bk_checked").await.unwrap(); // backs off a minute
        let ids: BTreeSet<String> = store
            .reconcilable(100)
            .await
            .unwrap()
            .into_iter()
            .map(|booking| booking.id)
            .collect();
        let expected: BTreeSet<String> = ["bk_payout", "bk_refund", "bk_unpaid"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(ids, expected);
        assert_eq!(store.reconcilable(1).await.unwrap().len(), 1, "bounded");
        let checked = status(&*store, "bk_checked").await;
        assert_eq!(checked.gateway_checks, 1);
        assert!(checked.next_check_at.is_some());
    })
    .await;
}

#[tokio::test]
async fn the_backlog_counts_what_waits_too_long() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        confirmed(&*store, "bk_due", 1, 2).await; // due since 2020, not started
        confirmed(&*store, "bk_sent", 3, 4).await;
        store.begin_payout("bk_sent", None).await.unwrap(); // no outcome yet
        confirmed(&*store, "bk_paid", 5, 6).await;
        store.begin_payout("bk_paid", None).await.unwrap();
        store
            .payout_event("escrow_bk_paid", PayoutStatus::Paid)
            .await
            .unwrap();
        confirmed(&*store, "bk_refund", 7, 8).await;
        store.cancel("bk_refund").await.unwrap();
        store
            .claim_refund("bk_refund", "rc", Duration::from_secs(60))
            .await
            .unwrap();
        let hour = Duration::from_secs(3600);
        let patience = Duration::from_secs(30);
        assert_eq!(
            store.backlog(hour, patience).await.unwrap().unsent_refunds,
            0,
            "being sent"
        );
        store.release_refund_claim("bk_refund", "rc").await.unwrap();
        for (event, outcome) in [
            ("e1", InboxOutcome::Failed("gateway down".to_owned())),
            ("e2", InboxOutcome::Dead("poison".to_owned())),
            ("e3", InboxOutcome::Processed),
        ] {
            store
                .inbox_receive("paystack", event, "charge.success", b"{}")
                .await
                .unwrap();
            store
                .inbox_finish("paystack", event, outcome)
                .await
                .unwrap();
        }
        assert_eq!(
            store.backlog(hour, patience).await.unwrap(),
            Backlog {
                stuck_payouts: 2,
                unsent_refunds: 1,
                failed_webhooks: 1,
                dead_webhooks: 1,
            }
        );
        let century = Duration::from_secs(100 * 365 * 86_400);
        assert_eq!(
            store
                .backlog(century, patience)
                .await
                .unwrap()
                .stuck_payouts,
            0,
            "not due yet"
        );
    })
    .await;
}

#[tokio::test]
async fn the_list_pages_by_id_with_or_without_a_status() {
    on_both(|store| async move {
        store.create_listing(&listing("ls_1")).await.unwrap();
        for (index, id) in ["bk_a", "bk_b", "bk_c", "bk_d", "bk_e"].iter().enumerate() {
            let day = u8::try_from(index).unwrap() * 2 + 1;
            held(&*store, id, day, day + 1).await;
        }
        store.cancel("bk_b").await.unwrap();
        store.cancel("bk_d").await.unwrap();
        let ids = |page: Vec<Booking>| page.into_iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.list(None, None, 2).await.unwrap()),
            ["bk_a", "bk_b"]
        );
        assert_eq!(
            ids(store.list(None, Some("bk_b"), 2).await.unwrap()),
            ["bk_c", "bk_d"]
        );
        assert_eq!(
            ids(store.list(None, Some("bk_d"), 2).await.unwrap()),
            ["bk_e"]
        );
        let pending = Some(BookingStatus::PendingPayment);
        assert_eq!(
            ids(store.list(pending, None, 10).await.unwrap()),
            ["bk_a", "bk_c", "bk_e"]
        );
        assert_eq!(
            ids(store.list(pending, Some("bk_a"), 1).await.unwrap()),
            ["bk_c"]
        );
        let cancelled = Some(BookingStatus::Cancelled);
        assert_eq!(
            ids(store.list(cancelled, None, 10).await.unwrap()),
            ["bk_b", "bk_d"]
        );
    })
    .await;
}

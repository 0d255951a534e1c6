#!/usr/bin/env python3
"""Drives two published Paystack clients against gateway-sim's /paystack.

    python paystack_clients.py http://127.0.0.1:PORT

pypaystack2 3.4.0 (typed: pydantic models) and paystackapi 2.1.3 (untyped:
the JSON as a dict) each run the same journey: a transaction paid through
the control plane, a transfer to a new recipient, a partial refund, and
the miscellaneous look-ups (banks, account resolution, balance).

One line per check: `ok   <client> <call>` or `FAIL <client> <call>: why`.
Exit status 1 if any check failed.

What fails a check:
  * the call raises;
  * `status` is not true where the call should succeed;
  * pypaystack2 only: `Response.data` is None, or the library logged its
    "validation error ... allowed to fail silently" warning. pypaystack2
    never raises on a body its pydantic model rejects: it logs a warning
    and sets `data=None`. We capture those warnings and re-validate the
    raw data with the same model to name the offending fields;
  * a field the library's model or a typical integration reads is missing
    or has the wrong value.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else os.environ["SIM_BASE"]
PAYSTACK = f"{BASE}/paystack"
SECRET = os.environ.get("PAYSTACK_SECRET_KEY", "sk_test_payguard_sim")
# A run-unique suffix so references never collide with an earlier run
# against the same simulator (references are unique per provider).
RUN = uuid.uuid4().hex[:10]
AMOUNT = 500_000  # kobo
REFUND = 120_000  # kobo, a partial refund
ACCOUNT, BANK = "0123456789", "058"

failures: list[str] = []


class CheckFailed(Exception):
    """Raised inside a check; the message names the missing or wrong field."""


def check(client: str, call: str, body: Callable[[], Any]) -> Any:
    """Runs one check, prints its line, and returns what `body` returned
    (None when it failed, so later checks that need it fail too)."""
    try:
        result = body()
    except CheckFailed as error:
        failures.append(f"{client} {call}")
        print(f"FAIL {client} {call}: {error}", flush=True)
        return None
    except Exception as error:  # noqa: BLE001 - any library exception fails the check
        failures.append(f"{client} {call}")
        print(f"FAIL {client} {call}: raised {type(error).__name__}: {error}", flush=True)
        return None
    print(f"ok   {client} {call}", flush=True)
    return result


def need(value: Any, path: str) -> Any:
    """`value` at the dotted `path` (`data.customer.email`, `data.0.id`),
    or CheckFailed naming the first missing step. Works on dicts, lists
    and pydantic models."""
    current = value
    walked = []
    for step in path.split("."):
        walked.append(step)
        if isinstance(current, dict):
            if step not in current:
                raise CheckFailed(f"missing field {'.'.join(walked)}")
            current = current[step]
        elif isinstance(current, list):
            if not step.isdigit() or int(step) >= len(current):
                raise CheckFailed(f"missing item {'.'.join(walked)} (list of {len(current)})")
            current = current[int(step)]
        else:
            if not hasattr(current, step):
                raise CheckFailed(f"missing field {'.'.join(walked)}")
            current = getattr(current, step)
    return current


def expect(value: Any, path: str, wanted: Any) -> Any:
    got = need(value, path)
    # Enums (pypaystack2's Currency) compare equal to their string value.
    if got != wanted:
        raise CheckFailed(f"{path} is {got!r}, expected {wanted!r}")
    return got


def present(value: Any, path: str) -> Any:
    """The field exists and is not null / empty."""
    got = need(value, path)
    if got is None or got == "":
        raise CheckFailed(f"{path} is {got!r}, expected a value")
    return got


def sim(path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST to the simulator's control plane (/_sim)."""
    request = urllib.request.Request(
        f"{BASE}/_sim{path}",
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        raise CheckFailed(f"control plane POST /_sim{path}: HTTP {error.code} {error.read()!r}")


# --------------------------------------------------------------------------
# pypaystack2 3.4.0
# --------------------------------------------------------------------------

from pypaystack2 import PaystackClient  # noqa: E402
from pypaystack2.base_clients import AbstractAPIClient  # noqa: E402
from pypaystack2.enums import Country, Currency, RecipientType  # noqa: E402
from pypaystack2.models import response_models as models  # noqa: E402
from pydantic import ValidationError  # noqa: E402


class SimPaystackClient(PaystackClient):
    """PaystackClient talking to the simulator.

    pypaystack2 has no base-URL option: `AbstractAPIClient._BASE_URL =
    "https://api.paystack.co"` is a class attribute read by `_full_url`, and
    `PaystackClient` builds one sub-client instance per API
    (`.transactions`, `.transfers`, ...). We shadow `_BASE_URL` with an
    instance attribute on this client and on each of its sub-clients: no
    class or module of the library is modified, and nothing outside this
    object is affected.
    """

    def __init__(self, secret_key: str, base_url: str):
        super().__init__(secret_key=secret_key)
        self._BASE_URL = base_url
        for value in vars(self).values():
            if isinstance(value, AbstractAPIClient):
                value._BASE_URL = base_url


class WarningCatcher(logging.Handler):
    """Collects the warnings pypaystack2 logs when a model fails to validate."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


caught = WarningCatcher()
logging.getLogger("pypaystack2").addHandler(caught)
logging.getLogger("pypaystack2").propagate = False  # keep the long warnings off stderr

pp2 = SimPaystackClient(SECRET, PAYSTACK)


def typed(response: Any, model: type, *, many: bool = False) -> Any:
    """Checks a pypaystack2 Response for success and for a validated model.

    Returns `response.data` (a model or a list of models)."""
    warnings_logged, caught.records[:] = list(caught.records), []
    if response.status is not True:
        raise CheckFailed(
            f"status={response.status!r} (HTTP {int(response.status_code)}, "
            f"message {response.message!r}, body {json.dumps(response.raw)[:300]})"
        )
    if response.data is None or warnings_logged:
        raise CheckFailed(f"{model.__name__} did not validate: {why_invalid(response, model)}")
    if many and not isinstance(response.data, list):
        raise CheckFailed(f"data is {type(response.data).__name__}, expected a list")
    return response.data


def why_invalid(response: Any, model: type) -> str:
    """Re-runs the library's own normalisation and model on the raw body to
    name the fields that made it set `data=None`."""
    raw = response.raw.get("data") if isinstance(response.raw, dict) else None
    if raw is None or raw == [] or raw == {}:
        return f"raw data is {raw!r} (pypaystack2 turns an empty data into None)"
    items = raw if isinstance(raw, list) else [raw]
    problems = []
    for index, item in enumerate(items):
        try:
            model.model_validate(pp2._normalize_data(item))
        except ValidationError as error:
            for detail in error.errors():
                where = ".".join(str(part) for part in detail["loc"])
                prefix = f"data.{index}." if isinstance(raw, list) else "data."
                got = detail.get("input")
                shown = "" if detail["type"] == "missing" else f" (got {json.dumps(got, default=str)[:80]})"
                problems.append(f"{prefix}{where}: {detail['msg']}{shown}")
    return "; ".join(sorted(set(problems))[:12]) or "data is None, but the model validates the raw data"


def pypaystack2_journey() -> None:
    C = "pypaystack2"
    reference = f"pp2-{RUN}"

    # --- transactions -------------------------------------------------------
    def initialize() -> Any:
        data = typed(
            pp2.transactions.initialize(amount=AMOUNT, email="pp2@example.com", reference=reference),
            models.InitTransaction,
        )
        expect(data, "reference", reference)
        present(data, "authorization_url")
        present(data, "access_code")
        return data

    if check(C, "transactions.initialize", initialize) is None:
        return

    def verify_unpaid() -> Any:
        data = typed(pp2.transactions.verify(reference), models.Transaction)
        # Paystack shows a never-paid transaction as `abandoned` (not final).
        expect(data, "status", "abandoned")
        return data

    check(C, "transactions.verify (unpaid)", verify_unpaid)

    def verify_unknown() -> Any:
        # An error must still be Paystack's JSON envelope: status false and
        # a message, which pypaystack2 surfaces without raising.
        response = pp2.transactions.verify(f"unknown-{RUN}")
        caught.records.clear()  # no model runs on an error body; nothing to report
        if response.status is not False or not response.message:
            raise CheckFailed(f"expected status false with a message, got {response.raw!r}")
        if int(response.status_code) != 404:
            raise CheckFailed(f"HTTP {int(response.status_code)}, expected 404")
        return response

    check(C, "transactions.verify (unknown reference: JSON error)", verify_unknown)
    check(C, "control plane: pay the charge", lambda: sim(f"/charges/{reference}/complete", {"outcome": "success"}))

    def verify() -> Any:
        data = typed(pp2.transactions.verify(reference), models.Transaction)
        expect(data, "status", "success")
        expect(data, "reference", reference)
        expect(data, "amount", AMOUNT)
        expect(data, "currency", Currency.NGN)
        present(data, "paid_at")
        present(data, "gateway_response")
        present(data, "id")
        # what an integration reads to charge the card again / know the payer
        expect(data, "customer.email", "pp2@example.com")
        present(data, "customer.customer_code")
        present(data, "authorization.authorization_code")
        return data

    transaction = check(C, "transactions.verify", verify)
    transaction_id = transaction.id if transaction is not None else None

    def fetch() -> Any:
        data = typed(pp2.transactions.get_transaction(id_=transaction_id), models.Transaction)
        expect(data, "id", transaction_id)
        expect(data, "reference", reference)
        expect(data, "status", "success")
        return data

    if transaction_id is not None:
        check(C, "transactions.get_transaction (GET /transaction/{id}/)", fetch)

    def list_transactions() -> Any:
        response = pp2.transactions.get_transactions()
        data = typed(response, models.Transaction, many=True)
        if reference not in [item.reference for item in data]:
            raise CheckFailed(f"reference {reference} not in the list")
        present(response.meta, "total")
        present(response.meta, "page")
        return data

    check(C, "transactions.get_transactions (GET /transaction/?perPage=)", list_transactions)

    # --- transfers ----------------------------------------------------------
    def create_recipient() -> Any:
        data = typed(
            pp2.transfer_recipients.create(
                type_=RecipientType.NUBAN,
                name="Ada Host",
                account_number=ACCOUNT,
                bank_code=BANK,
                currency=Currency.NGN,
            ),
            models.TransferRecipient,
        )
        if not str(present(data, "recipient_code")).startswith("RCP_"):
            raise CheckFailed(f"recipient_code {data.recipient_code!r} is not RCP_...")
        expect(data, "details.bank_code", BANK)
        present(data, "details.bank_name")
        return data

    recipient = check(C, "transfer_recipients.create", create_recipient)
    if recipient is None:
        return
    code = recipient.recipient_code

    def list_recipients() -> Any:
        data = typed(pp2.transfer_recipients.get_transfer_recipients(), models.TransferRecipient, many=True)
        if code not in [item.recipient_code for item in data]:
            raise CheckFailed(f"{code} not in the list")
        return data

    check(C, "transfer_recipients.get_transfer_recipients", list_recipients)

    def fetch_recipient() -> Any:
        data = typed(pp2.transfer_recipients.get_transfer_recipient(code), models.TransferRecipient)
        expect(data, "recipient_code", code)
        return data

    check(C, "transfer_recipients.get_transfer_recipient", fetch_recipient)

    transfer_reference = f"pp2_transfer_{RUN}"  # 16-100 of [a-z0-9_-]

    def initiate() -> Any:
        data = typed(
            pp2.transfers.initiate(
                amount=200_000,
                recipient=code,
                reason="conformance payout",
                currency=Currency.NGN,
                reference=transfer_reference,
            ),
            models.Transfer,
        )
        expect(data, "reference", transfer_reference)
        if not str(present(data, "transfer_code")).startswith("TRF_"):
            raise CheckFailed(f"transfer_code {data.transfer_code!r} is not TRF_...")
        expect(data, "amount", 200_000)
        # POST /transfer answers the recipient as its integer id
        expect(data, "recipient", recipient.id)
        return data

    transfer = check(C, "transfers.initiate", initiate)
    if transfer is None:
        return

    def verify_transfer() -> Any:
        # --auto-settle-ms settles it shortly after; poll until conclusive.
        deadline = time.monotonic() + 5
        while True:
            data = typed(pp2.transfers.verify(transfer_reference), models.Transfer)
            if data.status != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        expect(data, "status", "success")
        expect(data, "reference", transfer_reference)
        # verify shows the recipient as an object
        expect(data, "recipient.recipient_code", code)
        present(data, "session")
        return data

    check(C, "transfers.verify", verify_transfer)

    def fetch_transfer() -> Any:
        data = typed(pp2.transfers.get_transfer(transfer.transfer_code), models.Transfer)
        expect(data, "transfer_code", transfer.transfer_code)
        expect(data, "id", transfer.id)
        return data

    check(C, "transfers.get_transfer", fetch_transfer)

    def list_transfers() -> Any:
        data = typed(pp2.transfers.get_transfers(), models.Transfer, many=True)
        if transfer_reference not in [item.reference for item in data]:
            raise CheckFailed(f"{transfer_reference} not in the list")
        return data

    check(C, "transfers.get_transfers", list_transfers)

    # --- refunds ------------------------------------------------------------
    def create_refund() -> Any:
        data = typed(pp2.refunds.create(transaction=reference, amount=REFUND), models.Refund)
        expect(data, "amount", REFUND)
        expect(data, "status", "pending")
        present(data, "id")
        # POST /refund answers the transaction as an object
        expect(data, "transaction.reference", reference)
        return data

    refund = check(C, "refunds.create (partial)", create_refund)

    def list_refunds() -> Any:
        # the library documents `transaction` as the transaction ID
        data = typed(pp2.refunds.get_refunds(transaction=str(transaction_id)), models.Refund, many=True)
        if refund.id not in [item.id for item in data]:
            raise CheckFailed(f"refund {refund.id} not in the list")
        return data

    def fetch_refund() -> Any:
        data = typed(pp2.refunds.get_refund(str(refund.id)), models.Refund)
        expect(data, "id", refund.id)
        expect(data, "amount", REFUND)
        expect(data, "transaction", transaction_id)  # fetch gives the id
        return data

    if refund is not None and transaction_id is not None:
        check(C, "refunds.get_refunds", list_refunds)
        check(C, "refunds.get_refund", fetch_refund)

    # --- miscellaneous ------------------------------------------------------
    def banks() -> Any:
        data = typed(pp2.miscellaneous.get_banks(country=Country.NIGERIA), models.Bank, many=True)
        if BANK not in [item.code for item in data]:
            raise CheckFailed(f"bank {BANK} not in the list")
        return data

    check(C, "miscellaneous.get_banks", banks)

    def resolve() -> Any:
        data = typed(pp2.verification.resolve_account_number(ACCOUNT, BANK), models.BankAccountInfo)
        expect(data, "account_number", ACCOUNT)
        present(data, "account_name")
        return data

    check(C, "verification.resolve_account_number", resolve)

    def balance() -> Any:
        data = typed(pp2.transfer_control.check_balance(), models.IntegrationBalance, many=True)
        if Currency.NGN not in [item.currency for item in data]:
            raise CheckFailed("no NGN balance")
        return data

    check(C, "transfer_control.check_balance", balance)

    newest_first(code)


def newest_first(recipient_code: str) -> None:
    """Lists come newest first, so `perPage=1` is the latest object (what
    an integration polling "the last transaction" reads). Each probe makes
    two objects whose references sort the other way round from their
    creation order, so an order by reference cannot pass by chance."""
    C = "pypaystack2"

    def descending(items: list[Any]) -> None:
        stamps = [item.created_at for item in items]
        if stamps != sorted(stamps, reverse=True):
            order = ", ".join(f"{item.reference} ({item.created_at:%H:%M:%S.%f})" for item in items[:6])
            raise CheckFailed(f"not newest first: {order}")

    def transactions() -> Any:
        older, newer = f"ord-b-{RUN}", f"ord-a-{RUN}"
        for reference in (older, newer):
            typed(pp2.transactions.initialize(amount=10_000, email="ord@example.com", reference=reference),
                  models.InitTransaction)
            time.sleep(0.01)  # distinct created_at
        latest = typed(pp2.transactions.get_transactions(pagination=1), models.Transaction, many=True)
        if latest[0].reference != newer:
            raise CheckFailed(f"perPage=1 gave {latest[0].reference}, expected the newest, {newer}")
        descending(typed(pp2.transactions.get_transactions(), models.Transaction, many=True))

    check(C, "transactions.get_transactions is newest first", transactions)

    def transfers() -> Any:
        older, newer = f"ord_b_{RUN}_payout", f"ord_a_{RUN}_payout"
        for reference in (older, newer):
            typed(pp2.transfers.initiate(amount=1_000, recipient=recipient_code, reference=reference),
                  models.Transfer)
            time.sleep(0.01)
        latest = typed(pp2.transfers.get_transfers(pagination=1), models.Transfer, many=True)
        if latest[0].reference != newer:
            raise CheckFailed(f"perPage=1 gave {latest[0].reference}, expected the newest, {newer}")
        descending(typed(pp2.transfers.get_transfers(), models.Transfer, many=True))

    check(C, "transfers.get_transfers is newest first", transfers)


# --------------------------------------------------------------------------
# paystackapi 2.1.3
# --------------------------------------------------------------------------

import paystackapi  # noqa: E402

# paystackapi's base URL override: `paystackapi.API_URL` (default
# "https://api.paystack.co/") is read when the first client is built, and
# resource paths are appended without a slash, so it must end in "/".
paystackapi.API_URL = f"{PAYSTACK}/"
from paystackapi.paystack import Paystack  # noqa: E402

ps = Paystack(secret_key=SECRET)


def ok_body(body: Any) -> Any:
    """paystackapi returns the JSON body as a dict; `status` must be true."""
    if not isinstance(body, dict):
        raise CheckFailed(f"body is {type(body).__name__}, expected a JSON object")
    if body.get("status") is not True:
        raise CheckFailed(f"status={body.get('status')!r} (message {body.get('message')!r})")
    return need(body, "data")


def paystackapi_journey() -> None:
    C = "paystackapi"
    reference = f"psa-{RUN}"

    def initialize() -> Any:
        data = ok_body(ps.transaction.initialize(reference=reference, amount=AMOUNT, email="psa@example.com"))
        expect(data, "reference", reference)
        present(data, "authorization_url")
        present(data, "access_code")
        return data

    if check(C, "Transaction.initialize", initialize) is None:
        return
    check(C, "control plane: pay the charge", lambda: sim(f"/charges/{reference}/complete", {"outcome": "success"}))

    def verify() -> Any:
        data = ok_body(ps.transaction.verify(reference))
        expect(data, "status", "success")
        expect(data, "reference", reference)
        expect(data, "amount", AMOUNT)
        expect(data, "currency", "NGN")
        present(data, "paid_at")
        present(data, "id")
        expect(data, "customer.email", "psa@example.com")
        present(data, "authorization.authorization_code")
        return data

    transaction = check(C, "Transaction.verify", verify)
    transaction_id = transaction["id"] if transaction else None

    def fetch() -> Any:
        data = ok_body(ps.transaction.get(transaction_id))
        expect(data, "id", transaction_id)
        expect(data, "reference", reference)
        return data

    if transaction_id is not None:
        check(C, "Transaction.get", fetch)

    def list_transactions() -> Any:
        body = ps.transaction.list(perPage=50, page=1)
        data = ok_body(body)
        if reference not in [item.get("reference") for item in data]:
            raise CheckFailed(f"reference {reference} not in the list")
        present(body, "meta.total")
        return data

    check(C, "Transaction.list", list_transactions)

    def create_recipient() -> Any:
        data = ok_body(
            ps.transferRecipient.create(
                type="nuban", name="Bola Host", account_number="0123456780", bank_code=BANK, currency="NGN"
            )
        )
        present(data, "recipient_code")
        present(data, "id")
        expect(data, "details.account_number", "0123456780")
        return data

    recipient = check(C, "TransferRecipient.create", create_recipient)
    if recipient is None:
        return
    code = recipient["recipient_code"]

    def list_recipients() -> Any:
        data = ok_body(ps.transferRecipient.list(perPage=50))
        if code not in [item.get("recipient_code") for item in data]:
            raise CheckFailed(f"{code} not in the list")
        return data

    # paystackapi 2.1.3 has no "fetch one recipient" call; list only.
    check(C, "TransferRecipient.list", list_recipients)

    transfer_reference = f"psa_transfer_{RUN}"

    def initiate() -> Any:
        data = ok_body(
            ps.transfer.initiate(
                source="balance", amount=150_000, recipient=code, reference=transfer_reference, reason="payout"
            )
        )
        expect(data, "reference", transfer_reference)
        present(data, "transfer_code")
        present(data, "status")
        return data

    transfer = check(C, "Transfer.initiate", initiate)
    if transfer is None:
        return

    def verify_library_path() -> Any:
        # paystackapi 2.1.3 bug: Transfer.verify requests GET {API_URL}verify/{reference}
        # (no "transfer/"). Against real Paystack that is a 404 too. We only
        # check that the answer is JSON (the library calls .json() blindly)
        # and says status false; the real verify follows below.
        body = ps.transfer.verify(transfer_reference)
        if not isinstance(body, dict) or body.get("status") is not False:
            raise CheckFailed(f"expected a JSON status:false for the unrouted path, got {body!r}")
        return body

    check(C, "Transfer.verify (library bug: GET /verify/{ref}; expects JSON 404)", verify_library_path)

    def verify_transfer() -> Any:
        # The correct path, through the library's own request object
        # (same base URL, headers and .json() handling).
        deadline = time.monotonic() + 5
        while True:
            data = ok_body(ps.transfer().requests.get(f"transfer/verify/{transfer_reference}"))
            if data.get("status") != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        expect(data, "status", "success")
        expect(data, "reference", transfer_reference)
        expect(data, "recipient.recipient_code", code)
        return data

    check(C, "requests.get('transfer/verify/{ref}')", verify_transfer)

    def fetch_transfer() -> Any:
        data = ok_body(ps.transfer.fetch(transfer["transfer_code"]))
        expect(data, "transfer_code", transfer["transfer_code"])
        return data

    check(C, "Transfer.fetch", fetch_transfer)

    def list_transfers() -> Any:
        data = ok_body(ps.transfer.list(perPage=50))
        if transfer_reference not in [item.get("reference") for item in data]:
            raise CheckFailed(f"{transfer_reference} not in the list")
        return data

    check(C, "Transfer.list", list_transfers)

    def create_refund() -> Any:
        data = ok_body(ps.refund.create(transaction=reference, amount=REFUND))
        expect(data, "amount", REFUND)
        present(data, "id")
        present(data, "status")
        return data

    refund = check(C, "Refund.create (partial)", create_refund)

    def list_refunds() -> Any:
        # paystackapi sends Refund.list's arguments as a JSON body on the
        # GET (library quirk), so the filter does not reach the server;
        # look for our refund in the whole list.
        data = ok_body(ps.refund.list(transaction=reference))
        if refund["id"] not in [item.get("id") for item in data]:
            raise CheckFailed(f"refund {refund['id']} not in the list")
        return data

    def fetch_refund() -> Any:
        data = ok_body(ps.refund.fetch(refund["id"]))
        expect(data, "id", refund["id"])
        expect(data, "amount", REFUND)
        return data

    if refund is not None:
        check(C, "Refund.list", list_refunds)
        check(C, "Refund.fetch", fetch_refund)

    def banks() -> Any:
        data = ok_body(ps.misc.list_banks(country="nigeria", perPage=100))
        if BANK not in [item.get("code") for item in data]:
            raise CheckFailed(f"bank {BANK} not in the list")
        return data

    check(C, "Misc.list_banks", banks)

    def resolve() -> Any:
        data = ok_body(ps.verification.verify_account(account_number=ACCOUNT, bank_code=BANK))
        expect(data, "account_number", ACCOUNT)
        present(data, "account_name")
        return data

    check(C, "Verification.verify_account", resolve)

    def balance() -> Any:
        data = ok_body(ps.transferControl.check_balance())
        if "NGN" not in [item.get("currency") for item in data]:
            raise CheckFailed("no NGN balance")
        if not all(isinstance(item.get("balance"), int) for item in data):
            raise CheckFailed(f"balance is not an integer: {data!r}")
        return data

    check(C, "TransferControl.check_balance", balance)


if __name__ == "__main__":
    pypaystack2_journey()
    paystackapi_journey()
    if failures:
        print(f"paystack_clients.py: {len(failures)} check(s) failed: {', '.join(failures)}", flush=True)
        sys.exit(1)
    print("paystack_clients.py: all checks passed", flush=True)

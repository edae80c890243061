"""Paddle payloads -> the core's invoice view and domain events.

Payloads come from the Paddle stand-in's entity builders (shapes from PaddleHQ/paddle-openapi); the API
reads translation needs are a fake of our own `PaddleReads` protocol, counting its calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.standins.paddle import PaddleStandIn
from webhook_app.domain import (
    InvoiceClosed,
    InvoicePaid,
    PaymentFailed,
    PaymentMethodUpdated,
    SubscriptionEnded,
)
from webhook_app.errors import BadPayload, ResourceMissing
from webhook_app.providers.base import StoredEvent
from webhook_app.providers.paddle.translate import PaddleReads, Source, invoice_view, translate
from webhook_app.states import CaseStatus

OCCURRED = datetime(2026, 11, 2, 10, 0, 0)


class FakeReads:
    """Customers and past_due transactions from a stand-in's state; records what was asked."""

    def __init__(self, paddle: PaddleStandIn, embed_customer: bool = True):
        self.paddle = paddle
        self.embed_customer = embed_customer
        self.calls: list[tuple[str, Any]] = []

    def get_customer(self, ctm_id: str) -> dict[str, Any]:
        self.calls.append(("get_customer", ctm_id))
        if ctm_id not in self.paddle.customers:
            raise ResourceMissing(f"Paddle has no such customer ({ctm_id})", kind="customer")
        return self.paddle.customers[ctm_id]

    def list_past_due_transactions(
        self,
        customer_id: str | None = None,
        *,
        subscription_id: str | None = None,
        include_customer: bool = False,
        include_address: bool = False,
    ) -> Iterator[dict[str, Any]]:
        self.calls.append(("list_past_due_transactions", (customer_id, subscription_id)))
        for txn in self.paddle.transactions.values():
            if txn["status"] != "past_due" or (subscription_id and txn["subscription_id"] != subscription_id):
                continue
            if customer_id and txn["customer_id"] != customer_id:
                continue
            embedded = dict(txn)
            if include_customer and self.embed_customer:
                embedded["customer"] = self.paddle.customers[txn["customer_id"]]
            yield embedded


@pytest.fixture
def paddle() -> PaddleStandIn:
    return PaddleStandIn()


@pytest.fixture
def renewal(paddle: PaddleStandIn) -> dict[str, Any]:
    """Ada's $49.00 monthly renewal, declined twice: a past_due transaction."""
    customer = paddle.add_customer("ada@example.com", "Ada Lovelace")
    sub = paddle.add_subscription(customer["id"], unit_amount=4900)
    return paddle.fail_renewal(sub["id"], error_code="insufficient_funds", attempts=2)


def stored(paddle: PaddleStandIn, event_type: str, data: dict[str, Any]) -> StoredEvent:
    envelope = paddle.event(event_type, data)
    return StoredEvent("paddle", envelope["event_id"], event_type, False, None, OCCURRED, envelope)


def run(paddle: PaddleStandIn, event_type: str, data: dict[str, Any], reads: FakeReads | None = None) -> Any:
    reads = reads or FakeReads(paddle)
    return translate(stored(paddle, event_type, data), Source(reads=reads, livemode=False))


def test_fake_reads_fulfil_the_protocol(paddle: PaddleStandIn) -> None:
    reads: PaddleReads = FakeReads(paddle)  # mypy checks the shape; this checks it is usable as one
    assert list(reads.list_past_due_transactions()) == []


@pytest.mark.parametrize("event_type", ["transaction.payment_failed", "transaction.past_due"])
def test_a_failed_renewal_becomes_payment_failed_with_the_fetched_customers_email(
    paddle: PaddleStandIn, renewal: dict[str, Any], event_type: str
) -> None:
    reads = FakeReads(paddle)
    [event] = run(paddle, event_type, renewal, reads)
    assert isinstance(event, PaymentFailed) and event.failed_at == OCCURRED
    invoice = event.invoice
    assert (invoice.provider, invoice.id, invoice.customer_id) == ("paddle", renewal["id"], renewal["customer_id"])
    assert (invoice.customer_email, invoice.customer_name) == ("ada@example.com", "Ada Lovelace")
    assert (invoice.amount_due, invoice.amount_remaining, invoice.amount_paid, invoice.currency) == (
        4900,
        4900,
        0,
        "usd",
    )
    assert (invoice.status, invoice.attempt_count, invoice.failure_reason) == ("open", 2, "insufficient_funds")
    assert invoice.subscription_id == renewal["subscription_id"] and invoice.number == renewal["invoice_number"]
    assert invoice.next_payment_attempt is None and invoice.retries_over is False
    assert invoice.hosted_invoice_url is None and invoice.auto_collected and not invoice.livemode
    assert reads.calls == [("get_customer", renewal["customer_id"])]


def test_both_failure_events_of_one_transaction_name_the_same_invoice(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    [failed] = run(paddle, "transaction.payment_failed", renewal)
    [past_due] = run(paddle, "transaction.past_due", renewal)
    assert failed.invoice.id == past_due.invoice.id == renewal["id"]


@pytest.mark.parametrize(
    "changes",
    [
        {"origin": "web", "subscription_id": None},  # a card declined in a checkout the customer is looking at
        {"origin": "subscription_payment_method_change"},  # declined while updating: the customer is there
        {"collection_mode": "manual"},  # an unpaid invoice past its terms: not card dunning
    ],
)
def test_failures_that_are_not_dunning_open_nothing_and_read_nothing(
    paddle: PaddleStandIn, renewal: dict[str, Any], changes: dict[str, Any]
) -> None:
    reads = FakeReads(paddle)
    assert run(paddle, "transaction.payment_failed", {**renewal, **changes}, reads) == []
    assert run(paddle, "transaction.past_due", {**renewal, **changes}, reads) == []
    assert reads.calls == []


def test_subscription_past_due_opens_the_case_of_its_past_due_transaction_with_the_included_customer(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    reads = FakeReads(paddle)
    subscription = paddle.subscriptions[renewal["subscription_id"]]
    [event] = run(paddle, "subscription.past_due", subscription, reads)
    assert isinstance(event, PaymentFailed) and event.invoice.id == renewal["id"]
    assert event.invoice.customer_email == "ada@example.com"
    assert reads.calls == [("list_past_due_transactions", (renewal["customer_id"], renewal["subscription_id"]))]


def test_subscription_past_due_fetches_the_customer_once_when_the_key_cannot_read_included_customers(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    reads = FakeReads(paddle, embed_customer=False)
    subscription = paddle.subscriptions[renewal["subscription_id"]]
    [event] = run(paddle, "subscription.past_due", subscription, reads)
    assert event.invoice.customer_email == "ada@example.com"
    assert reads.calls[-1] == ("get_customer", renewal["customer_id"])


def test_subscription_past_due_before_its_transaction_is_past_due_waits_for_the_transaction_event(
    paddle: PaddleStandIn,
) -> None:
    customer = paddle.add_customer()
    sub = paddle.add_subscription(customer["id"], status="past_due")
    assert run(paddle, "subscription.past_due", sub) == []


def test_completed_after_failures_is_a_payment_with_the_captured_time_and_every_attempt_counted(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    paid = paddle.pay_transaction(renewal["id"])
    [event] = run(paddle, "transaction.completed", paid)
    assert isinstance(event, InvoicePaid)
    captured_at = datetime.fromisoformat(paid["payments"][0]["captured_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert event.paid_at == captured_at == event.invoice.paid_at
    assert (event.invoice.status, event.invoice.amount_paid, event.invoice.attempt_count) == ("paid", 4900, 3)
    assert event.invoice.customer_email is None  # not needed to book a payment: no API call


def test_paid_status_counts_as_paid_too(paddle: PaddleStandIn, renewal: dict[str, Any]) -> None:
    paid = {**paddle.pay_transaction(renewal["id"]), "status": "paid"}
    [event] = run(paddle, "transaction.paid", paid)
    assert isinstance(event, InvoicePaid) and event.invoice.is_paid


def test_the_zero_amount_payment_method_change_completing_books_nothing(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    change = paddle.add_transaction(
        renewal["customer_id"],
        subscription_id=renewal["subscription_id"],
        status="completed",
        total=0,
        origin="subscription_payment_method_change",
    )
    assert run(paddle, "transaction.completed", change) == []


def test_a_paid_event_whose_transaction_is_not_paid_is_refused(paddle: PaddleStandIn, renewal: dict[str, Any]) -> None:
    with pytest.raises(BadPayload, match="not paid"):
        run(paddle, "transaction.completed", renewal)


def test_canceled_transaction_closes_its_case_as_lost(paddle: PaddleStandIn, renewal: dict[str, Any]) -> None:
    [event] = run(paddle, "transaction.canceled", {**renewal, "status": "canceled"})
    assert event == InvoiceClosed(renewal["id"], CaseStatus.VOID, "transaction canceled", at=OCCURRED)


def test_canceled_subscription_ends_its_cases(paddle: PaddleStandIn, renewal: dict[str, Any]) -> None:
    sub = paddle.cancel_subscription(renewal["subscription_id"])
    assert run(paddle, "subscription.canceled", sub) == [
        SubscriptionEnded(sub["id"], "subscription canceled", at=OCCURRED)
    ]


def test_a_saved_payment_method_pauses_the_customer_unless_saved_buying_a_one_time_item(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    method = {
        "id": "paymtd_01hs0000000000000000000001",
        "customer_id": renewal["customer_id"],
        "origin": "subscription",
    }
    assert run(paddle, "payment_method.saved", method) == [PaymentMethodUpdated(renewal["customer_id"], at=OCCURRED)]
    assert run(paddle, "payment_method.saved", {**method, "origin": "saved_during_purchase"}) == []


def test_an_unhandled_type_is_none(paddle: PaddleStandIn, renewal: dict[str, Any]) -> None:
    assert run(paddle, "transaction.updated", renewal) is None


def test_a_customer_paddle_no_longer_knows_stops_the_event_as_missing(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    with pytest.raises(ResourceMissing) as caught:
        run(paddle, "transaction.payment_failed", {**renewal, "customer_id": "ctm_01hs9999999999999999999999"})
    assert caught.value.kind == "customer"


def test_zero_decimal_currency_keeps_minor_units(paddle: PaddleStandIn) -> None:
    customer = paddle.add_customer()
    sub = paddle.add_subscription(customer["id"], currency="JPY", unit_amount=500)
    txn = paddle.fail_renewal(sub["id"])
    invoice = invoice_view(txn, livemode=True)
    assert (invoice.amount_due, invoice.currency, invoice.amount_display, invoice.livemode) == (
        500,
        "jpy",
        "¥500",
        True,
    )


def test_included_customer_and_address_fill_email_name_and_country(
    paddle: PaddleStandIn, renewal: dict[str, Any]
) -> None:
    address = paddle.add_address(renewal["customer_id"], "de")
    invoice = invoice_view(
        {**renewal, "customer": paddle.customers[renewal["customer_id"]], "address": address}, livemode=False
    )
    assert (invoice.customer_email, invoice.customer_name, invoice.customer_country) == (
        "ada@example.com",
        "Ada Lovelace",
        "DE",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("grand_total", "49.00", "whole number of minor units"),
        ("grand_total", 49.0, "not a string of minor units"),
        ("balance", "", "whole number of minor units"),
    ],
)
def test_amounts_that_are_not_minor_unit_strings_are_refused(
    paddle: PaddleStandIn, renewal: dict[str, Any], field: str, value: Any, message: str
) -> None:
    txn = {**renewal, "details": {"totals": {**renewal["details"]["totals"], field: value}}}
    with pytest.raises(BadPayload, match=message):
        invoice_view(txn, livemode=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "sub_01hs0000000000000000000001"}, "txn_"),
        ({"customer_id": None}, "no customer_id"),
        ({"details": {}}, "details.totals"),
        ({"currency_code": "dollars"}, "ISO 4217"),
        ({"payments": "declined"}, "must be a list"),
    ],
)
def test_malformed_transactions_are_refused_naming_the_field(
    paddle: PaddleStandIn, renewal: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadPayload, match=message):
        invoice_view({**renewal, **changes}, livemode=False)

"""Braintree episodes and translation: which case a subscription's charges belong to, and what each
notification kind means to the core. Subscriptions are the plain dicts `objects.subscription_dict` makes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from webhook_app import domain
from webhook_app.domain import InvoicePaid, PaymentFailed, SubscriptionEnded
from webhook_app.errors import ResourceMissing, TransientError
from webhook_app.providers.base import StoredEvent
from webhook_app.providers.braintree import episodes
from webhook_app.providers.braintree.translate import invoice_view, translate

AT = datetime(2026, 5, 18, 9, 30)


def txn(tid: str, status: str, amount: int = 4999, *, kind: str = "sale", day: int = 1) -> dict[str, Any]:
    return {
        "id": tid,
        "type": kind,
        "status": status,
        "amount": f"{amount / 100:.2f}",
        "amount_minor": amount,
        "currency_iso_code": "USD",
        "processor_response_code": "2001" if status == "processor_declined" else "1000",
        "processor_response_text": "Insufficient Funds" if status == "processor_declined" else "Approved",
        "created_at": f"2026-05-{day:02d}T10:00:00+00:00",
        "customer_details": {"id": "cust_ada", "email": "ada@example.com"},
    }


def subscription(*transactions: dict[str, Any], status: str = "Past Due", balance: int = 4999) -> dict[str, Any]:
    return {
        "id": "sub_ada",
        "status": status,
        "balance": f"{balance / 100:.2f}",
        "balance_minor": balance,
        "failure_count": sum(t["status"] == "processor_declined" for t in transactions),
        "next_billing_date": "2026-06-01",
        "payment_method_token": "tok1",
        "currency": "USD",
        "customer_id": "cust_ada",
        "transactions": list(transactions),  # newest first, as Braintree lists them
    }


CUSTOMER = {
    "id": "cust_ada",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "addresses": [{"country_code_alpha2": "gb", "country_name": "United Kingdom"}],
}


class FakeReader:
    """The SubscriptionReader translation uses, over dicts; records what it was asked."""

    def __init__(self, subscriptions: dict[str, dict[str, Any]] | None = None):
        self.subscriptions = subscriptions or {}
        self.calls: list[tuple[str, str]] = []

    def find_subscription(self, sub_id: str) -> dict[str, Any]:
        self.calls.append(("subscription", sub_id))
        return self.subscriptions[sub_id]

    def find_customer(self, customer_id: str) -> dict[str, Any]:
        self.calls.append(("customer", customer_id))
        return dict(CUSTOMER)


def stored(kind: str, sub: dict[str, Any] | None) -> StoredEvent:
    payload = {"kind": kind, "subject_type": "subscription", "subject_id": "sub_ada", "subscription": sub}
    return StoredEvent("braintree", f"{kind}:x", kind, False, None, AT, payload)


# -- episodes -----------------------------------------------------------------------------------------


def test_a_run_of_failures_is_named_by_its_first_failed_charge_and_keeps_its_name_through_retries():
    first = subscription(txn("t2", "processor_declined", day=2), txn("t1", "settled", day=1))
    retried = subscription(txn("t3", "processor_declined", day=5), *first["transactions"], balance=9998)
    assert episodes.latest(first).invoice_id == episodes.latest(retried).invoice_id == "sub_ada:t2"
    assert [t["id"] for t in episodes.latest(retried).failures] == ["t3", "t2"]


def test_the_charge_that_ends_a_run_is_its_payment_and_a_plain_renewal_is_no_episode():
    recovered = subscription(
        txn("t4", "submitted_for_settlement"), txn("t3", "processor_declined"), txn("t1", "settled")
    )
    episode = episodes.latest(recovered)
    assert episode.invoice_id == "sub_ada:t3" and episode.payment["id"] == "t4"
    renewal = subscription(txn("t5", "settled"), *recovered["transactions"], status="Active", balance=0)
    assert episodes.latest(renewal) is None


def test_refunds_and_voided_sales_neither_fail_nor_pay():
    sub = subscription(
        txn("r1", "settled", kind="credit"),
        txn("v1", "voided"),
        txn("t2", "gateway_rejected"),
        txn("t1", "settled"),
    )
    episode = episodes.latest(sub)
    assert episode.invoice_id == "sub_ada:t2" and episode.payment is None


def test_find_reads_an_old_episode_back_after_later_renewals():
    later = subscription(
        txn("t6", "settled", day=30),  # next month's renewal
        txn("t4", "settled", day=8),  # the recovery
        txn("t3", "processor_declined", day=5),
        txn("t2", "processor_declined", day=2),
        txn("t1", "settled", day=1),
        status="Active",
        balance=0,
    )
    episode = episodes.find(later, "t2")
    assert episode.payment["id"] == "t4" and [t["id"] for t in episode.failures] == ["t3", "t2"]
    assert episodes.find(later, "t1") is None  # a successful charge opens no episode
    assert episodes.find(later, "gone") is None


@pytest.mark.parametrize("bad", ["sub_ada", ":t1", "sub_ada:", ""])
def test_ids_that_are_not_ours_are_resource_missing(bad):
    with pytest.raises(ResourceMissing) as info:
        episodes.split(bad)
    assert info.value.kind == "invoice"
    assert episodes.split("sub_ada:t2") == ("sub_ada", "t2")


# -- invoice views --------------------------------------------------------------------------------------


def test_an_open_episode_owes_the_balance_until_the_next_billing_date_with_the_customers_details():
    sub = subscription(txn("t3", "processor_declined"), txn("t2", "processor_declined"), balance=9998)
    view = invoice_view(sub, episodes.latest(sub), customer=CUSTOMER, livemode=True)
    assert (view.provider, view.id, view.status, view.currency) == ("braintree", "sub_ada:t2", "open", "usd")
    assert (view.amount_due, view.amount_remaining, view.amount_paid, view.attempt_count) == (9998, 9998, 0, 2)
    assert view.next_payment_attempt == datetime(2026, 6, 1)
    assert (view.customer_email, view.customer_name, view.customer_country) == ("ada@example.com", "Ada Lovelace", "GB")
    assert view.failure_reason == "2001 Insufficient Funds" and view.subscription_id == "sub_ada" and view.livemode


def test_a_paid_episode_counts_the_charge_that_ended_it():
    sub = subscription(txn("t3", "settled", day=9), txn("t2", "processor_declined"), status="Active", balance=0)
    view = invoice_view(sub, episodes.latest(sub))
    assert view.is_paid and (view.amount_paid, view.attempt_count) == (4999, 2)
    assert view.paid_at == datetime(2026, 5, 9, 10, 0) and view.next_payment_attempt is None


def test_an_ended_subscription_is_closed_and_a_cleared_balance_without_a_charge_is_void():
    canceled = subscription(txn("t2", "processor_declined"), status="Canceled")
    assert invoice_view(canceled, episodes.latest(canceled)).status == domain.CANCELED
    assert invoice_view(canceled, episodes.latest(canceled)).is_closed
    cleared = subscription(txn("t2", "processor_declined"), status="Active", balance=0)
    assert invoice_view(cleared, episodes.latest(cleared)).status == domain.VOID


def test_a_company_stands_in_for_a_customer_without_a_name():
    sub = subscription(txn("t2", "processor_declined"))
    view = invoice_view(sub, episodes.latest(sub), customer={"company": "Analytical Engines Ltd", "addresses": []})
    assert view.customer_name == "Analytical Engines Ltd" and view.customer_country is None


# -- notifications ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["subscription_charged_unsuccessfully", "subscription_went_past_due"])
def test_both_failure_kinds_open_the_same_case_with_the_customer_read_from_braintree(kind):
    reader = FakeReader()
    sub = subscription(txn("t2", "processor_declined"), txn("t1", "settled"))
    [event] = translate(stored(kind, sub), reader, livemode=False)
    assert isinstance(event, PaymentFailed) and event.failed_at == AT
    assert event.invoice.id == "sub_ada:t2" and event.invoice.customer_email == "ada@example.com"
    assert reader.calls == [("customer", "cust_ada")]


def test_a_skeletal_notification_is_completed_from_the_api():
    bare = {"id": "sub_ada", "status": None, "transactions": [], "currency": None, "customer_id": None}
    reader = FakeReader({"sub_ada": subscription(txn("t2", "processor_declined"))})
    [event] = translate(stored("subscription_went_past_due", bare), reader, livemode=False)
    assert event.invoice.id == "sub_ada:t2"
    assert reader.calls == [("subscription", "sub_ada"), ("customer", "cust_ada")]


def test_a_failure_read_after_its_episode_ended_opens_and_recovers_the_case():
    bare = {"id": "sub_ada", "transactions": []}
    paid = subscription(txn("t3", "settled"), txn("t2", "processor_declined"), status="Active", balance=0)
    events = translate(stored("subscription_went_past_due", bare), FakeReader({"sub_ada": paid}), livemode=False)
    assert [type(e) for e in events] == [PaymentFailed, InvoicePaid]
    assert events[0].invoice.status == "open" and events[0].invoice.attempt_count == 1
    assert events[1].invoice.is_paid and events[0].invoice.id == events[1].invoice.id


def test_failures_wait_for_the_merchant_id_rather_than_failing_for_good():
    sub = subscription(txn("t2", "processor_declined"))
    with pytest.raises(TransientError) as info:
        translate(stored("subscription_charged_unsuccessfully", sub), None, livemode=False)
    assert "BRAINTREE_MERCHANT_ID" in str(info.value) and info.value.retry_after == 3600


@pytest.mark.parametrize("kind", ["subscription_charged_successfully", "subscription_went_active"])
def test_a_charge_ending_a_run_is_a_payment_read_from_the_notification_alone(kind):
    reader = FakeReader()
    sub = subscription(txn("t3", "settled", day=9), txn("t2", "processor_declined"), status="Active", balance=0)
    [event] = translate(stored(kind, sub), reader, livemode=False)
    assert isinstance(event, InvoicePaid) and event.invoice.id == "sub_ada:t2"
    assert event.paid_at == datetime(2026, 5, 9, 10, 0) and event.invoice.amount_paid == 4999
    assert reader.calls == []  # the customer is not needed to record a payment


def test_renewals_and_first_charges_are_nothing_to_recover():
    sub = subscription(txn("t2", "settled"), txn("t1", "settled"), status="Active", balance=0)
    assert translate(stored("subscription_charged_successfully", sub), FakeReader(), livemode=False) == []
    first = subscription(txn("t1", "settled"), status="Active", balance=0)
    assert translate(stored("subscription_went_active", first), FakeReader(), livemode=False) == []


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("subscription_canceled", "subscription canceled"), ("subscription_expired", "subscription expired")],
)
def test_an_ended_subscription_stops_its_cases(kind, reason):
    [event] = translate(stored(kind, subscription(txn("t2", "processor_declined"))), None, livemode=False)
    assert event == SubscriptionEnded("sub_ada", reason, at=AT)


def test_kinds_we_do_not_handle_are_ignored_and_a_missing_subject_is_bad_payload():
    assert translate(stored("dispute_opened", None), None, livemode=False) is None
    assert translate(stored("check", None), None, livemode=False) is None
    from webhook_app.errors import BadPayload

    with pytest.raises(BadPayload):
        translate(stored("subscription_canceled", None), None, livemode=False)

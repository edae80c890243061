"""Recurly notifications -> domain events, through a fake of our own `RecurlyReads` protocol."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.fakes import FakeRecurlyReads
from tests.fixtures import recurly_objects as ro
from webhook_app import domain
from webhook_app.domain import InvoiceClosed, InvoicePaid, PaymentFailed, PaymentMethodUpdated
from webhook_app.errors import BadPayload
from webhook_app.providers.recurly.client import RecurlyRefused
from webhook_app.providers.recurly.translate import EVENT_TYPES, invoice_view, translate
from webhook_app.states import CaseStatus


@pytest.fixture
def reads() -> FakeRecurlyReads:
    return FakeRecurlyReads()


PAUSED_ADA = PaymentMethodUpdated("ada", at=datetime(2026, 11, 2, 10))


def past_due(number: int = 1001) -> dict:
    return ro.notification("charge_invoice", "past_due", invoice_number=number)


def test_past_due_reads_the_invoice_and_reports_one_failed_payment(reads):
    reads.put(ro.invoice("1001", total=49.99, currency="USD"))
    [event] = translate(past_due(1001), reads)
    assert isinstance(event, PaymentFailed)
    assert event.failed_at == datetime(2026, 11, 1, 10, 0, 5)
    inv = event.invoice
    assert (inv.provider, inv.id, inv.number, inv.customer_id) == ("recurly", "1001", "1001", "ada")
    assert (inv.customer_email, inv.customer_name, inv.customer_country) == ("ada@example.com", "Ada Lovelace", "GB")
    assert (inv.currency, inv.amount_due, inv.amount_paid, inv.amount_remaining) == ("usd", 4999, 0, 4999)
    assert (inv.status, inv.attempt_count, inv.failure_reason) == (domain.OPEN, 1, "insufficient_funds")
    assert inv.subscription_id == "s0000000sub01" and inv.auto_collected and not inv.livemode
    # Recurly says nothing of its next retry: the final notice keeps the cadence instead of going out now
    assert inv.next_payment_attempt is None and inv.retries_over is False
    assert inv.hosted_invoice_url is None  # Recurly's hosted invoice URL is a login: never stored
    assert reads.calls == ["invoice 1001"]


@pytest.mark.parametrize(
    ("total", "currency", "minor"),
    [(500, "JPY", 500), (19.99, "USD", 1999), ("19.99", "USD", 1999), (12.345, "BHD", 12345), (1.005, "KWD", 1005)],
)
def test_decimal_amounts_become_exact_minor_units(reads, total, currency, minor):
    reads.put(ro.invoice("7", total=total, currency=currency))
    [event] = translate(past_due(7), reads)
    assert (event.invoice.amount_due, event.invoice.amount_remaining) == (minor, minor)
    assert event.invoice.currency == currency.lower()


def test_an_amount_with_more_decimals_than_the_currency_has_is_refused_not_rounded(reads):
    reads.put(ro.invoice("8", total=0.1 + 0.2, currency="USD"))
    with pytest.raises(BadPayload, match="more decimal places than USD"):
        translate(past_due(8), reads)


def test_invoice_number_may_arrive_as_text(reads):
    reads.put(ro.invoice("FR1001"))
    [event] = translate(ro.notification("charge_invoice", "past_due", invoice_number="FR1001"), reads)
    assert event.invoice.id == "FR1001"


def test_a_manual_invoice_past_its_net_terms_is_not_a_failed_payment(reads):
    reads.put(ro.invoice("1002", collection_method="manual", transactions=[]))
    assert translate(past_due(1002), reads) == []


def test_past_due_delivered_after_the_invoice_was_paid_records_the_failure_then_the_payment(reads):
    reads.put(ro.paid(ro.invoice("1003")))
    failed, paid = translate(past_due(1003), reads)
    assert isinstance(failed, PaymentFailed) and isinstance(paid, InvoicePaid)
    assert (failed.invoice.status, failed.invoice.attempt_count, failed.invoice.amount_paid) == (domain.OPEN, 1, 0)
    assert (paid.invoice.status, paid.invoice.attempt_count, paid.invoice.amount_paid) == (domain.PAID, 2, 4999)
    assert paid.paid_at == datetime(2026, 11, 3, 12, 0, 0)


def test_past_due_delivered_after_dunning_failed_the_invoice_opens_and_closes_the_case(reads):
    reads.put(ro.invoice("1004", state="failed", final_dunning_event=True))
    failed, closed = translate(past_due(1004), reads)
    assert isinstance(failed, PaymentFailed) and failed.invoice.status == domain.OPEN
    assert isinstance(closed, InvoiceClosed) and closed.status == CaseStatus.UNCOLLECTIBLE


def test_paid_is_a_payment_dated_when_recurly_closed_the_invoice(reads):
    reads.put(ro.paid(ro.invoice("1005", total=500, currency="JPY"), at="2026-11-05T08:30:00Z"))
    [event] = translate(ro.notification("charge_invoice", "paid", invoice_number=1005), reads)
    assert isinstance(event, InvoicePaid)
    assert (event.invoice.amount_paid, event.invoice.currency, event.invoice.attempt_count) == (500, "jpy", 2)
    assert event.paid_at == datetime(2026, 11, 5, 8, 30) and not event.invoice.paid_out_of_band


def test_paid_without_an_automatic_charge_is_out_of_band(reads):
    # Paid by credits or marked paid: no successful transaction on the invoice.
    reads.put(ro.paid(ro.invoice("1006"), transactions=ro.invoice()["transactions"]))
    [event] = translate(ro.notification("charge_invoice", "paid", invoice_number=1006), reads)
    assert event.invoice.paid_out_of_band


def test_a_paid_notification_for_an_invoice_open_again_changes_nothing(reads):
    reads.put(ro.invoice("1007"))  # the current state wins over a stale notification
    assert translate(ro.notification("charge_invoice", "paid", invoice_number=1007), reads) == []


@pytest.mark.parametrize(("state", "status"), [("failed", CaseStatus.UNCOLLECTIBLE), ("voided", CaseStatus.VOID)])
def test_failed_and_voided_invoices_close_the_case(reads, state, status):
    reads.put(ro.invoice("1008", state=state))
    [event] = translate(ro.notification("charge_invoice", "failed", invoice_number=1008), reads)
    assert isinstance(event, InvoiceClosed) and (event.invoice_id, event.status) == ("1008", status)


def test_the_final_dunning_event_means_no_retry_is_left(reads):
    reads.put(ro.invoice("1009", final_dunning_event=True))
    [event] = translate(ro.notification("dunning_event", "created", invoice_number=1009), reads)
    assert isinstance(event, PaymentFailed) and event.invoice.retries_over


def test_billing_info_updated_pauses_the_account_without_calling_recurly(reads):
    event = ro.notification("billing_info", "updated", account_code="ada")
    assert translate(event, reads) == [PaymentMethodUpdated("ada", at=datetime(2026, 11, 1, 10, 0, 5))]
    assert reads.calls == []


def test_collect_on_update_charges_the_past_due_invoice_once_and_reports_the_payment(reads):
    reads.put(ro.invoice("1010"))  # declined at 10:00:00; the card changed a day later
    event = ro.notification("billing_info", "updated", event_time="2026-11-02T10:00:00Z", account_code="ada")
    pause, paid = translate(event, reads, collect_on_update=True)
    assert isinstance(pause, PaymentMethodUpdated) and isinstance(paid, InvoicePaid)
    assert paid.invoice.amount_paid == 4999 and reads.collected == ["1010"]
    # Replayed (or retried after a crash): the invoice is no longer past due; nothing is charged again.
    assert translate(event, reads, collect_on_update=True) == [pause]
    assert reads.collected == ["1010"]


def test_collect_on_update_declined_is_a_new_failure_and_a_replay_does_not_charge_again(reads):
    reads.put(ro.invoice("1011"))
    reads.card_works = False
    event = ro.notification("billing_info", "updated", event_time="2026-11-02T10:00:00Z", account_code="ada")
    pause, failed = translate(event, reads, collect_on_update=True)
    assert isinstance(pause, PaymentMethodUpdated) and isinstance(failed, PaymentFailed)
    assert failed.invoice.attempt_count == 2 and reads.collected == ["1011"]
    # The declined attempt is stamped after the update: the replay sees it and charges nothing.
    reads.invoices["1011"]["transactions"][-1]["created_at"] = "2026-11-02T10:00:01Z"
    assert translate(event, reads, collect_on_update=True) == [pause]
    assert reads.collected == ["1011"]


def test_collect_on_update_leaves_an_invoice_recurly_already_charged_for_the_new_card(reads):
    charged = ro.transaction(success=False, created_at="2026-11-02T09:59:40Z")  # within the minute before
    reads.put(ro.invoice("1012", transactions=[ro.transaction(success=False), charged]))
    event = ro.notification("billing_info", "updated", event_time="2026-11-02T10:00:00Z", account_code="ada")
    assert translate(event, reads, collect_on_update=True) == [PAUSED_ADA]
    assert reads.collected == []


def test_collect_on_update_refused_as_not_collectible_is_only_logged(reads):
    reads.put(ro.invoice("1013"))
    reads.refuse = RecurlyRefused("Recurly refused the collection with HTTP 422", 422, "validation")
    event = ro.notification("billing_info", "updated", event_time="2026-11-02T10:00:00Z", account_code="ada")
    assert translate(event, reads, collect_on_update=True) == [PAUSED_ADA]
    assert reads.collected == ["1013"]


def test_types_the_app_does_not_handle_are_none_and_call_nothing(reads):
    assert translate(ro.notification("subscription", "renewed", uuid="x"), reads) is None
    assert reads.calls == []
    assert EVENT_TYPES == (
        "billing_info.updated",
        "charge_invoice.failed",
        "charge_invoice.paid",
        "charge_invoice.past_due",
        "dunning_event.created",
    )


@pytest.mark.parametrize(
    ("state", "balance", "status"),
    [
        ("pending", 49.99, domain.OPEN),
        ("processing", 49.99, domain.OPEN),
        ("paid", 0, domain.PAID),
        ("voided", 0, domain.VOID),
        ("failed", 49.99, domain.UNCOLLECTIBLE),
        ("closed", 0, domain.PAID),
        ("closed", 49.99, domain.UNCOLLECTIBLE),
    ],
)
def test_recurly_states_map_onto_the_core_statuses(state, balance, status):
    assert invoice_view(ro.invoice(state=state, balance=balance), livemode=True).status == status


def test_an_answer_that_is_not_an_invoice_is_a_bad_payload():
    with pytest.raises(BadPayload):
        invoice_view({"object": "account", "id": "a1"}, livemode=True)
    with pytest.raises(BadPayload, match="account"):
        invoice_view({**ro.invoice(), "account": None}, livemode=True)

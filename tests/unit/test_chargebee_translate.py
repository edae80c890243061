"""Chargebee events into domain events: every handled event type, read back from the API's copy.

Resources come from the Chargebee stand-in's builders (shaped like API v2); `ApiCopy` answers what
`GET /events/{id}` and `GET /customers/{id}` would, from the stand-in's state, and records each read.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from tests.standins.chargebee import ChargebeeStandIn
from webhook_app import domain
from webhook_app.domain import (
    InvoiceClosed,
    InvoicePaid,
    PaymentFailed,
    PaymentMethodUpdated,
    SubscriptionEnded,
)
from webhook_app.errors import BadPayload, ResourceMissing
from webhook_app.providers.chargebee import translate as tr
from webhook_app.providers.chargebee.translate import UnconfirmedEvent, invoice_view, is_live_site
from webhook_app.states import CaseStatus

OCCURRED = 1_790_000_000
NEXT_RETRY = OCCURRED + 3 * 86400


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


class ApiCopy:
    """The `ChargebeeReader` protocol over the stand-in's state: Chargebee's copy of each resource."""

    def __init__(self, standin: ChargebeeStandIn):
        self.standin = standin
        self.reads: list[tuple[str, str]] = []

    def retrieve_event(self, event_id: str) -> dict:
        self.reads.append(("event", event_id))
        if event_id not in self.standin.events:
            raise ResourceMissing(f"Chargebee has no such event (404) on the event {event_id} retrieval", kind="event")
        return copy.deepcopy(self.standin.events[event_id])

    def retrieve_customer(self, customer_id: str) -> dict:
        self.reads.append(("customer", customer_id))
        return copy.deepcopy(self.standin.customers[customer_id])


@pytest.fixture
def cb() -> ChargebeeStandIn:
    standin = ChargebeeStandIn()
    standin.add_customer("cust_ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")
    standin.customers["cust_ada"]["billing_address"]["country"] = "gb"
    standin.add_subscription("sub_1", customer_id="cust_ada")
    standin.add_invoice(
        "inv_1001",
        customer_id="cust_ada",
        subscription_id="sub_1",
        amount_due=4900,
        currency_code="USD",
        next_retry_at=NEXT_RETRY,
        dunning_attempts=2,
    )
    return standin


@pytest.fixture
def api(cb) -> ApiCopy:
    return ApiCopy(cb)


def run(api: ApiCopy, event: dict, *, livemode: bool = False):
    return tr.translate(api, event["id"], event["event_type"], livemode=livemode)


# -- payment_failed -------------------------------------------------------------------------------------


def test_payment_failed_opens_on_the_invoice_with_chargebees_dunning_fields(cb, api):
    content_transaction = {"id": "txn_1", "status": "failure", "error_code": "card_declined", "object": "transaction"}
    event = cb.add_invoice_event("payment_failed", "inv_1001", occurred_at=OCCURRED)
    cb.events[event["id"]]["content"]["transaction"] = content_transaction

    [failed] = run(api, event)

    assert isinstance(failed, PaymentFailed)
    assert failed.failed_at == utc(OCCURRED)
    inv = failed.invoice
    assert (inv.provider, inv.id, inv.number, inv.customer_id, inv.subscription_id) == (
        "chargebee",
        "inv_1001",
        "inv_1001",
        "cust_ada",
        "sub_1",
    )
    assert (inv.currency, inv.amount_due, inv.amount_paid, inv.amount_remaining) == ("usd", 4900, 0, 4900)
    assert inv.amount_display == "$49.00"
    assert inv.attempt_count == 2  # the dunning attempts Chargebee lists
    assert inv.next_payment_attempt == utc(NEXT_RETRY)
    assert inv.status == domain.OPEN and not inv.is_closed
    assert (inv.customer_email, inv.customer_name, inv.customer_country) == ("ada@example.com", "Ada Lovelace", "GB")
    assert inv.failure_reason == "card_declined"
    assert inv.livemode is False and inv.auto_collected is True
    assert api.reads == [("event", event["id"])]  # the customer came with the event


def test_payment_failed_without_the_customer_in_its_content_reads_the_customer(cb, api):
    event = cb.add_invoice_event("payment_failed", "inv_1001")
    del cb.events[event["id"]]["content"]["customer"]

    [failed] = run(api, event)

    assert failed.invoice.customer_email == "ada@example.com"
    assert api.reads == [("event", event["id"]), ("customer", "cust_ada")]


def test_the_failing_attempt_counts_even_before_chargebee_lists_it(cb, api):
    cb.invoices["inv_1001"].update(dunning_attempts=[], dunning_status=None)
    event = cb.add_invoice_event("payment_failed", "inv_1001")
    [failed] = run(api, event)
    assert failed.invoice.attempt_count == 1


def test_exhausted_dunning_is_still_owed_with_no_retry_planned(cb, api):
    cb.exhaust_dunning("inv_1001")
    [failed] = run(api, cb.add_invoice_event("payment_failed", "inv_1001"))
    assert failed.invoice.status == domain.OPEN  # not_paid: every retry failed, the customer still owes it
    assert failed.invoice.next_payment_attempt is None  # so the final notice goes out now


def test_a_failed_payment_for_no_invoice_opens_nothing(cb, api):
    event = cb.add_event("payment_failed", {"transaction": {"id": "txn_9", "status": "failure"}})
    assert run(api, event) == []


def test_a_site_not_ending_in_test_is_live(cb, api):
    [failed] = run(api, cb.add_invoice_event("payment_failed", "inv_1001"), livemode=True)
    assert failed.invoice.livemode is True
    assert is_live_site("acme") and not is_live_site("acme-test") and not is_live_site(None)


def test_zero_decimal_currencies_stay_in_minor_units(cb, api):
    cb.add_invoice("inv_jpy", customer_id="cust_ada", amount_due=500, currency_code="JPY")
    [failed] = run(api, cb.add_invoice_event("payment_failed", "inv_jpy"))
    assert (failed.invoice.amount_due, failed.invoice.amount_display) == (500, "¥500")


# -- paid, voided, written off ----------------------------------------------------------------------


def test_payment_succeeded_on_a_paid_invoice_is_invoice_paid_at_its_paid_time(cb, api):
    paid = cb.pay_invoice("inv_1001")
    [event] = run(api, cb.add_invoice_event("payment_succeeded", "inv_1001", occurred_at=OCCURRED))

    assert isinstance(event, InvoicePaid)
    assert event.paid_at == utc(paid["paid_at"])
    assert (event.invoice.status, event.invoice.amount_paid, event.invoice.amount_remaining) == (domain.PAID, 4900, 0)
    assert event.invoice.amount_due == 4900  # what was asked, as the ledger records it


def test_the_payment_that_settled_an_invoice_counts_as_an_attempt(cb, api):
    cb.pay_invoice("inv_1001")  # after two failed attempts, paid on a hosted page: no attempt listed for it
    [event] = run(api, cb.add_invoice_event("payment_succeeded", "inv_1001"))
    assert event.invoice.attempt_count == 3
    cb.invoices["inv_1001"]["dunning_attempts"].append({"attempt": 2, "txn_status": "success"})
    [event] = run(api, cb.add_invoice_event("payment_succeeded", "inv_1001"))
    assert event.invoice.attempt_count == 3  # a retry that succeeded is listed: not counted twice
    cb.add_invoice("inv_clean", customer_id="cust_ada", dunning_status=None, dunning_attempts=0)
    cb.pay_invoice("inv_clean")
    [event] = run(api, cb.add_invoice_event("payment_succeeded", "inv_clean"))
    assert event.invoice.attempt_count == 1  # paid at the first charge: never a recovery


def test_a_partial_payment_records_nothing_yet(cb, api):
    cb.invoices["inv_1001"].update(amount_paid=1000, amount_due=3900)
    assert run(api, cb.add_invoice_event("payment_succeeded", "inv_1001")) == []


@pytest.mark.parametrize("event_type", ["invoice_updated", "invoice_generated"])
def test_a_voided_invoice_closes_its_case_as_void(cb, api, event_type):
    cb.void_invoice("inv_1001")
    [closed] = run(api, cb.add_invoice_event(event_type, "inv_1001", occurred_at=OCCURRED))
    assert closed == InvoiceClosed("inv_1001", CaseStatus.VOID, "invoice voided", at=utc(OCCURRED))


@pytest.mark.parametrize("event_type", ["invoice_updated", "invoice_generated"])
def test_a_written_off_invoice_is_uncollectible_not_a_recovery(cb, api, event_type):
    cb.write_off_invoice("inv_1001")  # Chargebee: status paid, write_off_amount set
    [closed] = run(api, cb.add_invoice_event(event_type, "inv_1001", occurred_at=OCCURRED))
    assert closed == InvoiceClosed("inv_1001", CaseStatus.UNCOLLECTIBLE, "invoice written off", at=utc(OCCURRED))


def test_an_invoice_updated_to_paid_settles_like_payment_succeeded(cb, api):
    cb.pay_invoice("inv_1001")
    [event] = run(api, cb.add_invoice_event("invoice_updated", "inv_1001"))
    assert isinstance(event, InvoicePaid) and event.invoice.id == "inv_1001"


def test_an_invoice_update_that_leaves_it_owed_changes_nothing(cb, api):
    assert run(api, cb.add_invoice_event("invoice_updated", "inv_1001")) == []


# -- subscriptions and payment sources ------------------------------------------------------------------


def test_a_subscription_cancelled_for_non_payment_ends_its_cases(cb, api):
    event = cb.cancel_subscription("sub_1", cancel_reason="not_paid")
    [ended] = run(api, event)
    assert isinstance(ended, SubscriptionEnded)
    assert (ended.subscription_id, ended.reason) == ("sub_1", "subscription cancelled for non-payment")


@pytest.mark.parametrize(
    ("cancel_reason", "reason"),
    [(None, "subscription cancelled"), ("no_card", "subscription cancelled (no_card)")],
)
def test_any_other_cancellation_also_stops_the_chase_and_says_why(cb, api, cancel_reason, reason):
    [ended] = run(api, cb.cancel_subscription("sub_1", cancel_reason=cancel_reason))
    assert ended.reason == reason


@pytest.mark.parametrize("event_type", ["payment_source_added", "payment_source_updated"])
def test_a_new_or_fixed_payment_source_pauses_the_customer(cb, api, event_type):
    event = cb.add_payment_source_event(event_type, "cust_ada", occurred_at=OCCURRED)
    assert run(api, event) == [PaymentMethodUpdated("cust_ada", at=utc(OCCURRED))]


def test_a_payment_source_turning_expired_is_not_a_new_way_to_pay(cb, api):
    event = cb.add_payment_source_event("payment_source_updated", "cust_ada", status="expired")
    assert run(api, event) == []


# -- what the API does not confirm ----------------------------------------------------------------------


def test_an_event_id_chargebee_does_not_know_is_refused_and_nothing_is_translated(cb, api):
    with pytest.raises(UnconfirmedEvent, match="does not know event ev_forged"):
        tr.translate(api, "ev_forged", "payment_failed", livemode=False)


def test_a_delivery_claiming_another_type_than_chargebees_record_is_refused(cb, api):
    real = cb.add_payment_source_event("payment_source_added", "cust_ada")
    with pytest.raises(UnconfirmedEvent, match="forged"):
        tr.translate(api, real["id"], "payment_failed", livemode=False)


def test_unhandled_types_are_not_read_back(api):
    assert tr.translate(api, "ev_1", "coupon_created", livemode=False) is None
    assert api.reads == []


# -- malformed resources --------------------------------------------------------------------------------


def test_a_malformed_amount_is_a_bad_payload_naming_the_field(cb):
    invoice = dict(cb.invoices["inv_1001"], amount_due="49.00")
    with pytest.raises(BadPayload, match=r"invoice\.amount_due"):
        invoice_view(invoice, cb.customers["cust_ada"], livemode=False)


def test_a_customer_that_is_not_the_invoices_is_refused(cb):
    other = dict(cb.customers["cust_ada"], id="cust_other")
    with pytest.raises(BadPayload, match="not the invoice's customer"):
        invoice_view(cb.invoices["inv_1001"], other, livemode=False)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("payment_due", domain.OPEN),
        ("not_paid", domain.OPEN),
        ("posted", domain.OPEN),
        ("paid", domain.PAID),
        ("voided", domain.VOID),
        ("pending", domain.DRAFT),
    ],
)
def test_every_chargebee_invoice_status_maps_onto_the_cores(cb, status, expected):
    invoice = dict(cb.invoices["inv_1001"], status=status)
    assert tr.invoice_status(invoice) == expected


def test_a_customer_with_auto_collection_off_is_not_charged_automatically(cb):
    customer = dict(cb.customers["cust_ada"], auto_collection="off")
    assert invoice_view(cb.invoices["inv_1001"], customer, livemode=False).auto_collected is False


def test_the_company_names_a_customer_without_a_personal_name(cb):
    customer = dict(cb.customers["cust_ada"], first_name=None, last_name=None, company="Analytical Engines Ltd")
    assert invoice_view(cb.invoices["inv_1001"], customer, livemode=False).customer_name == "Analytical Engines Ltd"

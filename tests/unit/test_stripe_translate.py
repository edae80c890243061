"""One invoice view for every API version; money formatting that knows zero-decimal currencies."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.fixtures import stripe_objects as so
from webhook_app.domain import CustomerDeleted
from webhook_app.errors import BadPayload
from webhook_app.money import format_amount, to_decimal
from webhook_app.providers.stripe.endpoints import handled_event_types
from webhook_app.providers.stripe.translate import invoice_view, translate


@pytest.mark.parametrize(
    "amount,currency,expected",
    [
        (4900, "usd", "$49.00"),
        (500, "jpy", "¥500"),
        (123456, "eur", "€1,234.56"),
        (1000, "krw", "₩1,000"),
        (1500, "kwd", "KWD 1.500"),
        (-1250, "eur", "-€12.50"),
        (99, "chf", "CHF 0.99"),
        (7, "bif", "BIF 7"),
    ],
)
def test_amounts_are_formatted_by_the_currencys_minor_unit(amount, currency, expected):
    assert format_amount(amount, currency) == expected


def test_to_decimal_keeps_exact_minor_units():
    assert to_decimal(4999, "usd") == Decimal("49.99")
    assert to_decimal(500, "JPY") == Decimal("500")


def test_legacy_payload_reads_top_level_subscription_and_paid():
    view = invoice_view(so.invoice(api_version=so.LEGACY, status="paid", paid_out_of_band=True))
    assert view.subscription_id == "sub_A" and view.is_paid and view.paid_out_of_band


def test_basil_payload_reads_subscription_from_parent():
    obj = so.invoice(api_version=so.BASIL, subscription="sub_B")
    assert "subscription" not in obj and "paid" not in obj
    view = invoice_view(obj)
    assert view.subscription_id == "sub_B" and not view.is_paid and not view.paid_out_of_band


def test_legacy_paid_flag_without_status_still_counts_as_paid():
    obj = so.invoice(api_version=so.LEGACY, status="paid")
    obj.pop("status")
    assert invoice_view(obj).is_paid


def test_expanded_customer_and_decline_reason():
    obj = so.invoice(
        customer={"id": "cus_X", "object": "customer"},
        payment_intent={"id": "pi_1", "last_payment_error": {"decline_code": "insufficient_funds"}},
    )
    view = invoice_view(obj)
    assert view.customer_id == "cus_X" and view.failure_reason == "insufficient_funds"


@pytest.mark.parametrize(
    "change",
    [
        {"object": "charge"},
        {"id": None},
        {"customer": None},
        {"currency": 5},
        {"amount_due": "49.00"},
        {"attempt_count": True},
    ],
)
def test_strange_payloads_raise_bad_payload_with_the_field(change):
    with pytest.raises(BadPayload):
        invoice_view(dict(so.invoice(), **change))


def test_overlong_display_text_is_shortened_to_what_the_database_holds():
    view = invoice_view(so.invoice(customer_name="N" * 600, number="9" * 300))
    assert len(view.customer_name) == 255 and len(view.number) == 255


def test_an_email_longer_than_any_address_is_bad_payload():
    with pytest.raises(BadPayload, match="customer_email"):
        invoice_view(so.invoice(email="a" * 330 + "@example.com"))


def test_customer_deleted_asks_for_the_customers_data_to_be_erased_and_is_subscribed_to():
    customer = {"id": "cus_gone", "object": "customer", "email": "gone@example.com", "name": "Gone"}
    [event] = translate(so.event("customer.deleted", customer, created=1735689600))
    assert isinstance(event, CustomerDeleted) and event.customer_id == "cus_gone"
    assert "customer.deleted" in handled_event_types()  # `stripe register-endpoint` subscribes to it
    with pytest.raises(BadPayload):
        translate(so.event("customer.deleted", {"id": "sub_1", "object": "subscription"}))

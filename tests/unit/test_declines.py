"""Decline-aware recovery: the decline table, its precedence, and reading Stripe's payloads of both generations."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import stripe
from stripe.params._invoice_payment_list_params import InvoicePaymentListParams

import webhook_app.declines as declines_module
from tests.fixtures import stripe_declines as sd
from webhook_app.clock import from_unix
from webhook_app.declines import (
    CLASS_OF,
    TECHNICAL_RETRY_GRACE,
    Decline,
    DeclineClass,
    as_message_data,
    classify,
    first_message_at,
    template_keys,
)
from webhook_app.errors import BadPayload
from webhook_app.providers.stripe.declines import (
    decline_for_invoice,
    decline_from_invoice_payments,
    decline_from_legacy_invoice,
    invoice_payments_params,
)

UC, CB, IF, TE, AU, DN, UN = (
    DeclineClass.UPDATE_CARD,
    DeclineClass.CONTACT_BANK,
    DeclineClass.INSUFFICIENT_FUNDS,
    DeclineClass.TECHNICAL,
    DeclineClass.AUTHENTICATION,
    DeclineClass.DO_NOT_CONTACT,
    DeclineClass.UNKNOWN,
)


def _at(seconds: int) -> datetime:
    moment = from_unix(seconds)
    assert moment is not None
    return moment


FAILED_AT = _at(sd.FAILED_AT)
NEXT_RETRY = _at(sd.NEXT_RETRY)
DEFAULT = FAILED_AT + timedelta(minutes=5)  # the usual first message: after the grouping window


def read(case: sd.DeclineCase, generation: str) -> Decline | None:
    if generation == "legacy":
        return decline_from_legacy_invoice(sd.legacy_invoice(case))
    return decline_from_invoice_payments(sd.invoice_payments(case))


# -- every fixture, both API generations ---------------------------------------------------------


@pytest.mark.parametrize("generation", ["legacy", "basil"])
@pytest.mark.parametrize("case", sd.CASES, ids=str)
def test_every_failed_attempt_fixture_gets_its_class_in_both_api_generations(
    case: sd.DeclineCase, generation: str
) -> None:
    decline = read(case, generation)
    assert decline is not None
    assert decline.decline_class is case.expected
    assert (decline.code, decline.decline_code, decline.advice_code) == (case.code, case.decline_code, case.advice_code)
    assert (decline.network_decline_code, decline.network_advice_code) == (
        case.network_decline_code,
        case.network_advice_code,
    )


@pytest.mark.parametrize("case", [c for c in sd.CASES if c.intent_status != "requires_action"], ids=str)
def test_an_old_invoice_with_only_its_charge_expanded_gets_the_same_class(case: sd.DeclineCase) -> None:
    invoice = sd.legacy_invoice(case, expand=("charge",))
    assert isinstance(invoice["payment_intent"], str)
    decline = decline_from_legacy_invoice(invoice)
    assert decline is not None and decline.decline_class is case.expected


EXPECTED_FIRST_KEYS = {
    UC: ("first.update_card", "first"),
    CB: ("first.contact_bank", "first"),
    IF: ("first.insufficient_funds", "first"),
    TE: ("first.technical", "first"),
    AU: ("first.authentication", "first"),
    DN: (),
    UN: ("first",),
}


@pytest.mark.parametrize("case", sd.CASES, ids=str)
def test_every_fixture_picks_its_template_and_first_message_time(case: sd.DeclineCase) -> None:
    decline = read(case, "basil")
    assert decline is not None
    assert template_keys("first", decline.decline_class) == EXPECTED_FIRST_KEYS[case.expected]
    when = first_message_at(decline.decline_class, FAILED_AT, NEXT_RETRY, DEFAULT)
    if case.expected is TE:
        assert when == NEXT_RETRY + TECHNICAL_RETRY_GRACE  # wait for Stripe's retry before bothering anyone
    elif case.expected is DN:
        assert when is None  # no customer message at all
    else:
        assert when == DEFAULT


# -- precedence ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,decline_code,advice_code,expected",
    [
        # 1. fraud and withdrawn authorization beat everything
        ("card_declined", "fraudulent", "try_again_later", DN),
        ("card_declined", "stop_payment_order", "do_not_try_again", DN),
        ("authentication_required", "fraudulent", None, DN),
        ("debit_not_authorized", "generic_decline", "try_again_later", DN),  # found in the error code too
        # 2. authentication beats advice
        ("authentication_required", "authentication_required", "do_not_try_again", AU),
        ("card_declined", "authentication_required", "try_again_later", AU),
        # 4. advice codes beat vague decline codes ...
        ("card_declined", "generic_decline", "do_not_try_again", UC),
        ("card_declined", "do_not_honor", "confirm_card_data", UC),
        ("card_declined", "do_not_honor", "try_again_later", TE),
        ("processing_error", None, "do_not_try_again", UC),
        (None, None, "try_again_later", TE),
        ("card_declined", "some_future_code", "do_not_try_again", UC),
        # ... but not specific ones
        ("expired_card", "expired_card", "try_again_later", UC),
        ("card_declined", "insufficient_funds", "try_again_later", IF),
        ("card_declined", "insufficient_funds", "do_not_try_again", UC),
        ("card_declined", "insufficient_funds", "confirm_card_data", UC),
        # 3. the decline code before the error code
        ("processing_error", "expired_card", None, UC),
        ("card_declined", None, None, CB),
        ("card_declined", "some_future_code", None, UN),  # an unlisted decline code is not a generic decline
        ("expired_card", "some_future_code", None, UC),  # but a specific error code still says what it is
        # unknown advice is ignored; nothing known is unknown
        ("card_declined", "generic_decline", "call_us_maybe", CB),
        (None, None, None, UN),
        ("", "  ", "", UN),
        (None, "some_future_code", None, UN),
        # codes are matched case-insensitively
        ("CARD_DECLINED", "Insufficient_Funds", None, IF),
    ],
)
def test_precedence(
    code: str | None, decline_code: str | None, advice_code: str | None, expected: DeclineClass
) -> None:
    assert classify(code, decline_code, advice_code) is expected


def test_the_action_required_path_is_authentication_unless_there_is_a_fraud_signal() -> None:
    assert classify(None, None, None, action_required=True) is AU
    assert classify("card_declined", "generic_decline", "try_again_later", action_required=True) is AU
    assert classify("card_declined", "fraudulent", None, action_required=True) is DN


# -- the table itself ----------------------------------------------------------------------------

BRIEF = {
    UC: "expired_card incorrect_number invalid_number invalid_expiry_month invalid_expiry_year incorrect_cvc "
    "lost_card stolen_card pickup_card restricted_card card_not_supported currency_not_supported",
    CB: "do_not_honor call_issuer generic_decline card_velocity_exceeded transaction_not_allowed "
    "withdrawal_count_limit_exceeded",
    IF: "insufficient_funds",
    TE: "processing_error issuer_not_available try_again_later reenter_transaction",
    AU: "authentication_required",
    DN: "fraudulent merchant_blacklist revocation_of_authorization stop_payment_order security_violation",
}


@pytest.mark.parametrize("decline_class", list(BRIEF), ids=str)
def test_the_agreed_codes_map_to_their_class(decline_class: DeclineClass) -> None:
    for code in BRIEF[decline_class].split():
        assert CLASS_OF[code] is decline_class, code
        assert classify("card_declined", code, None) is decline_class, code


def test_no_code_is_listed_under_two_classes() -> None:
    listed = [code for codes in declines_module._CODES.values() for code in codes]
    assert len(listed) == len(set(listed)) == len(CLASS_OF)


def _docstring_sections() -> dict[str, str]:
    doc = declines_module.__doc__ or ""
    table = doc.split("Decline classes", 1)[1].split("Precedence", 1)[0]
    parts = re.split(r"^`([a-z_]+)`:", table, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_module_docstring_lists_every_code_under_its_class() -> None:
    sections = _docstring_sections()
    assert set(sections) == {c.value for c in DeclineClass}
    for code, decline_class in CLASS_OF.items():
        assert re.search(rf"\b{code}\b", sections[decline_class.value]), (code, decline_class)
    for advice, decline_class in declines_module.ADVICE.items():
        assert re.search(rf"Advice codes:.*\b{advice}\b", sections[decline_class.value], re.DOTALL)


def test_every_class_has_a_description_for_the_team() -> None:
    assert set(declines_module.DESCRIPTIONS) == set(DeclineClass)
    assert Decline.of("card_declined", "insufficient_funds").description == "insufficient funds"


# -- template keys, first message, message data -----------------------------------------------------


def test_template_keys_fall_back_to_the_steps_own_template() -> None:
    assert template_keys("first", IF) == ("first.insufficient_funds", "first")
    assert template_keys("reminder", UC) == ("reminder.update_card", "reminder")
    assert template_keys("final", "technical") == ("final.technical", "final")  # type: ignore[arg-type]
    assert template_keys("first", UN) == ("first",)
    assert template_keys("action_required", DN) == ()


@pytest.mark.parametrize("step", ["", "first.update_card"])
def test_template_keys_refuse_a_step_that_is_not_a_plain_name(step: str) -> None:
    with pytest.raises(ValueError, match="plain name"):
        template_keys(step, UC)


def test_template_keys_refuse_an_unknown_class() -> None:
    with pytest.raises(ValueError):
        template_keys("first", "bogus")  # type: ignore[arg-type]


def test_technical_waits_for_the_scheduled_retry_but_never_goes_earlier_than_usual() -> None:
    assert first_message_at(TE, FAILED_AT, NEXT_RETRY, DEFAULT) == NEXT_RETRY + TECHNICAL_RETRY_GRACE
    later_default = NEXT_RETRY + timedelta(days=1)
    assert first_message_at(TE, FAILED_AT, NEXT_RETRY, later_default) == later_default


@pytest.mark.parametrize(
    "retry",
    [
        None,  # Stripe will not retry again
        FAILED_AT,  # not after the failure: stale
        FAILED_AT - timedelta(hours=1),
        FAILED_AT + timedelta(days=3, seconds=1),  # too far out to call it a blip
    ],
)
def test_technical_without_a_usable_retry_messages_at_the_usual_time(retry: datetime | None) -> None:
    assert first_message_at(TE, FAILED_AT, retry, DEFAULT) == DEFAULT


def test_technical_wait_and_grace_are_adjustable() -> None:
    assert (
        first_message_at(TE, FAILED_AT, NEXT_RETRY, DEFAULT, grace=timedelta(0), max_wait=timedelta(days=3))
        == NEXT_RETRY
    )
    assert first_message_at(TE, FAILED_AT, NEXT_RETRY, DEFAULT, max_wait=timedelta(days=1)) == DEFAULT


@pytest.mark.parametrize("decline_class", [UC, CB, IF, AU, UN])
def test_other_classes_message_at_the_usual_time_whatever_the_retry(decline_class: DeclineClass) -> None:
    assert first_message_at(decline_class, FAILED_AT, NEXT_RETRY, DEFAULT) == DEFAULT
    assert first_message_at(decline_class, FAILED_AT, None, DEFAULT) == DEFAULT


def test_do_not_contact_never_gets_a_first_message() -> None:
    assert first_message_at(DN, FAILED_AT, NEXT_RETRY, DEFAULT) is None
    assert first_message_at(DN, FAILED_AT, None, DEFAULT) is None


def test_message_data_for_nothing_known_is_unknown_with_empty_codes() -> None:
    assert as_message_data(None) == {"declineClass": "unknown", "declineCode": "", "adviceCode": ""}
    assert as_message_data(Decline.of()) == {"declineClass": "unknown", "declineCode": "", "adviceCode": ""}


def test_message_data_carries_the_most_specific_code_and_the_advice() -> None:
    data = as_message_data(Decline.of("card_declined", "insufficient_funds", "try_again_later"))
    assert data == {
        "declineClass": "insufficient_funds",
        "declineCode": "insufficient_funds",
        "adviceCode": "try_again_later",
    }
    assert as_message_data(Decline.of("expired_card"))["declineCode"] == "expired_card"


@pytest.mark.parametrize("hidden", ["fraudulent", "lost_card", "stolen_card", "pickup_card", "merchant_blacklist"])
def test_message_data_never_tells_the_customer_a_code_stripe_says_to_hide(hidden: str) -> None:
    decline = Decline.of("card_declined", hidden)
    assert as_message_data(decline)["declineCode"] == "generic_decline"
    assert decline.decline_code == hidden  # the team still sees the real reason


# -- reading payloads defensively ------------------------------------------------------------------


def test_invoice_payments_params_ask_for_the_invoices_payments_with_their_payment_intents() -> None:
    params = invoice_payments_params("in_1QxYz")
    assert params == {"invoice": "in_1QxYz", "expand": ["data.payment.payment_intent"], "limit": 10}


@pytest.mark.parametrize("bad", ["", None, 42, "x" * 256])
def test_invoice_payments_params_refuse_a_bad_invoice_id(bad: Any) -> None:
    with pytest.raises(BadPayload):
        invoice_payments_params(bad)


@pytest.mark.parametrize("bad", ["not a list", None, [], {}, {"data": "nope"}, {"data": None}])
def test_a_list_response_of_the_wrong_shape_is_a_bad_payload(bad: Any) -> None:
    with pytest.raises(BadPayload):
        decline_from_invoice_payments(bad)


def test_junk_items_and_an_empty_list_mean_nothing_known() -> None:
    assert decline_from_invoice_payments(sd.payments_list()) is None
    assert decline_from_invoice_payments({"object": "list", "data": [None, 3, "x", {"object": "charge"}]}) is None


def test_an_unexpanded_payment_intent_means_nothing_known() -> None:
    payments = sd.payments_list(sd.invoice_payment("pi_123", invoice_id="in_1"))
    assert decline_from_invoice_payments(payments) is None


def _intent(name: str) -> dict[str, Any]:
    intent, _ = sd.payment_intent(sd.BY_NAME[name], invoice_id="in_1")
    return intent


def test_the_newest_payment_decides() -> None:
    older = sd.invoice_payment(_intent("expired_card"), invoice_id="in_1", created=sd.FAILED_AT - 600)
    newer = sd.invoice_payment(_intent("insufficient_funds"), invoice_id="in_1", created=sd.FAILED_AT, is_default=False)
    for order in ((older, newer), (newer, older)):
        decline = decline_from_invoice_payments(sd.payments_list(*order))
        assert decline is not None and decline.decline_class is IF


def test_equal_creation_times_keep_the_lists_newest_first_order() -> None:
    first = sd.invoice_payment(_intent("expired_card"), invoice_id="in_1", created=sd.FAILED_AT)
    second = sd.invoice_payment(_intent("do_not_honor"), invoice_id="in_1", created=sd.FAILED_AT)
    decline = decline_from_invoice_payments(sd.payments_list(first, second))
    assert decline is not None and decline.decline_class is UC


def test_canceled_payments_are_history_and_a_paid_newest_payment_means_no_decline() -> None:
    canceled = sd.invoice_payment(_intent("fraudulent"), invoice_id="in_1", status="canceled", created=sd.FAILED_AT)
    open_ = sd.invoice_payment(_intent("do_not_honor"), invoice_id="in_1", created=sd.FAILED_AT - 600)
    decline = decline_from_invoice_payments(sd.payments_list(canceled, open_))
    assert decline is not None and decline.decline_class is CB
    paid = sd.invoice_payment(_intent("do_not_honor"), invoice_id="in_1", status="paid", created=sd.FAILED_AT + 60)
    assert decline_from_invoice_payments(sd.payments_list(paid, open_)) is None
    assert decline_from_invoice_payments(sd.payments_list(canceled)) is None


def test_a_malformed_created_sorts_as_oldest() -> None:
    odd = sd.invoice_payment(_intent("expired_card"), invoice_id="in_1")
    odd["created"] = "yesterday"
    good = sd.invoice_payment(_intent("insufficient_funds"), invoice_id="in_1", created=1)
    decline = decline_from_invoice_payments(sd.payments_list(odd, good))
    assert decline is not None and decline.decline_class is IF


def test_charge_and_payment_record_payments() -> None:
    _, charge = sd.payment_intent(sd.BY_NAME["stolen_card"], invoice_id="in_1")
    item = sd.invoice_payment("pi_x", invoice_id="in_1")
    item["payment"] = {"type": "charge", "charge": charge}
    decline = decline_from_invoice_payments(sd.payments_list(item))
    assert decline is not None and decline.decline_class is UC and decline.decline_code == "stolen_card"
    item["payment"] = {"type": "payment_record", "payment_record": "prec_1"}
    assert decline_from_invoice_payments(sd.payments_list(item)) is None
    item["payment"] = "garbage"
    assert decline_from_invoice_payments(sd.payments_list(item)) is None


@pytest.mark.parametrize(
    "odd", [123, {"nested": "dict"}, ["list"], "x" * 65, "has space", "semi;colon", "\ud800", "nul\x00"]
)
def test_implausible_codes_are_ignored_and_read_as_unknown(odd: Any) -> None:
    intent = _intent("insufficient_funds")
    intent["latest_charge"] = None
    for field in ("code", "decline_code", "advice_code", "network_decline_code", "network_advice_code"):
        intent["last_payment_error"][field] = odd
    decline = decline_from_invoice_payments(sd.payments_list(sd.invoice_payment(intent, invoice_id="in_1")))
    assert decline == Decline(UN)


def test_a_payment_intent_without_an_error_and_not_awaiting_action_has_no_decline() -> None:
    intent = _intent("insufficient_funds")
    intent.update(last_payment_error=None, status="processing")
    assert decline_from_invoice_payments(sd.payments_list(sd.invoice_payment(intent, invoice_id="in_1"))) is None


def test_an_expanded_latest_charge_completes_the_payment_intents_error() -> None:
    case = sd.BY_NAME["insufficient_funds"]
    intent, _ = sd.payment_intent(case, invoice_id="in_1", expand_latest_charge=True)
    del intent["last_payment_error"]["advice_code"]
    decline = decline_from_invoice_payments(sd.payments_list(sd.invoice_payment(intent, invoice_id="in_1")))
    assert decline is not None and decline.advice_code == "try_again_later"


@pytest.mark.parametrize("bad", [None, "in_1", ["invoice"], {"object": "charge", "id": "ch_1"}])
def test_a_legacy_read_of_something_that_is_not_an_invoice_is_a_bad_payload(bad: Any) -> None:
    with pytest.raises(BadPayload):
        decline_from_legacy_invoice(bad)


def test_legacy_invoices_without_expansions_paid_ones_and_basil_ones_have_no_decline() -> None:
    assert decline_from_legacy_invoice(sd.legacy_invoice(sd.BY_NAME["expired_card"], expand=())) is None
    paid = sd.legacy_invoice(sd.BY_NAME["expired_card"], status="paid")
    assert decline_from_legacy_invoice(paid) is None
    assert decline_from_legacy_invoice(sd.basil_invoice()) is None


def test_the_legacy_charge_fills_what_the_payment_intents_error_left_out() -> None:
    invoice = sd.legacy_invoice(sd.BY_NAME["advice_try_again_later"])
    del invoice["payment_intent"]["last_payment_error"]["advice_code"]
    decline = decline_from_legacy_invoice(invoice)
    assert decline is not None and decline.advice_code == "try_again_later" and decline.decline_class is TE


def test_a_legacy_error_without_any_code_is_unknown() -> None:
    invoice = sd.legacy_invoice(sd.BY_NAME["do_not_honor"], expand=("payment_intent",))
    invoice["payment_intent"]["last_payment_error"] = {"type": "api_error", "message": "Something went wrong."}
    assert decline_from_legacy_invoice(invoice) == Decline(UN)


def test_pre_2022_payment_intents_carry_their_charges_as_a_list() -> None:
    invoice = sd.legacy_invoice(sd.BY_NAME["stolen_card"], expand=("payment_intent",))
    intent = invoice["payment_intent"]
    _, charge = sd.payment_intent(sd.BY_NAME["stolen_card"], invoice_id=invoice["id"])
    intent["last_payment_error"] = None
    intent["status"] = "requires_payment_method"
    intent["charges"] = {"object": "list", "data": [charge], "has_more": False}
    decline = decline_from_legacy_invoice(invoice)
    assert decline is not None and decline.decline_code == "stolen_card"


def test_one_entry_point_reads_either_generation() -> None:
    case = sd.BY_NAME["card_velocity_exceeded"]
    legacy = decline_for_invoice(sd.legacy_invoice(case))
    basil = decline_for_invoice(sd.basil_invoice(), sd.invoice_payments(case))
    invoice = sd.basil_invoice()
    invoice["payments"] = sd.invoice_payments(case)
    expanded = decline_for_invoice(invoice)
    assert legacy and basil and expanded
    assert legacy.decline_class is basil.decline_class is expanded.decline_class is CB
    assert decline_for_invoice(sd.basil_invoice()) is None


# -- the fixtures are shaped like Stripe's objects -----------------------------------------------------


def _fields(cls: type) -> set[str]:
    return set(getattr(cls, "__annotations__", {}))


def test_fixture_field_names_exist_in_the_stripe_sdks_generated_models() -> None:
    """The SDK is generated from stripe/openapi: a misspelt field in a fixture or a reader fails here."""
    case = sd.BY_NAME["advice_do_not_try_again"]
    intent, charge = sd.payment_intent(case, invoice_id="in_1")
    item = sd.invoice_payment(intent, invoice_id="in_1")
    assert set(intent["last_payment_error"]) <= _fields(stripe.PaymentIntent.LastPaymentError)
    assert set(intent) <= _fields(stripe.PaymentIntent)
    assert set(charge["outcome"]) <= _fields(stripe.Charge.Outcome)
    assert set(charge) - {"invoice"} <= _fields(stripe.Charge)  # Charge.invoice went away with basil
    assert set(item) <= _fields(stripe.InvoicePayment)
    assert set(item["payment"]) <= _fields(stripe.InvoicePayment.Payment)
    assert stripe.InvoicePayment.class_url() == "/v1/invoice_payments"
    assert set(invoice_payments_params("in_1")) <= set(InvoicePaymentListParams.__annotations__)


def test_failed_at_is_naive_utc_like_every_stored_time() -> None:
    assert isinstance(FAILED_AT, datetime) and FAILED_AT.tzinfo is None

"""Why a payment failed, as one of seven classes that decide what the customer is told and when.

Stripe reports a failed card payment with an error `code` (often just `card_declined`), the issuer's
`decline_code`, and sometimes an `advice_code` saying whether a retry can work
(https://docs.stripe.com/declines/codes, https://docs.stripe.com/declines/card#retrying-issuer-declines,
https://docs.stripe.com/error-codes). This module is the one table that turns them into a class.

Decline classes
---------------

`update_card`: the card on file will not work again; the customer adds another one.
    Decline codes: expired_card, incorrect_number, invalid_number, invalid_expiry_month,
    invalid_expiry_year, incorrect_cvc, invalid_cvc, incorrect_zip, lost_card, stolen_card,
    pickup_card, restricted_card, card_not_supported, currency_not_supported,
    new_account_information_available, testmode_decline, do_not_try_again (deprecated decline code).
    Error codes: account_closed, no_account (bank debits).
    Advice codes: do_not_try_again, confirm_card_data.

`contact_bank`: the issuer said no without a reason the customer can fix here; they call their bank
(or use another card).
    Decline codes: do_not_honor, call_issuer, generic_decline, card_velocity_exceeded,
    transaction_not_allowed, withdrawal_count_limit_exceeded, no_action_taken, not_permitted,
    service_not_allowed, invalid_account, invalid_amount.
    Error codes: card_declined (a decline that came without any decline code).

`insufficient_funds`: the money was not there; topping up or another card fixes it.
    Decline codes: insufficient_funds.

`technical`: nothing is wrong with the card; Stripe's next retry will probably succeed, so the first
message waits for it.
    Decline codes: processing_error, issuer_not_available, try_again_later, reenter_transaction,
    approve_with_id, duplicate_transaction.
    Error codes: card_decline_rate_limit_exceeded.
    Advice codes: try_again_later.

`authentication`: the bank wants the customer to confirm the payment (3-D Secure) on the hosted page.
    Decline / error codes: authentication_required, payment_intent_authentication_failure,
    payment_intent_action_required, invoice_payment_intent_requires_action; also any payment whose
    PaymentIntent is `requires_action` (callers pass `action_required=True`).

`do_not_contact`: a fraud signal or a withdrawn authorization; no customer message, the team decides.
    Decline codes: fraudulent, merchant_blacklist, revocation_of_authorization,
    revocation_of_all_authorizations, stop_payment_order, security_violation.
    Error codes: debit_not_authorized (the customer told their bank the debit was not authorized).
    Radar: highest_risk_level (a charge's `outcome.reason` when Radar's default rule blocked it).

`unknown`: anything else, or nothing known (no decline recorded, a code this table does not list).

Precedence (first match wins)
-----------------------------

1. A do-not-contact signal in `decline_code` or `code` beats everything, advice codes and
   authentication included: telling someone whose issuer suspects fraud, or who told their bank to stop
   paying us, to "update your card" is the one message that does harm. `fraudulent` with advice
   `try_again_later` is still `do_not_contact`.
2. Authentication (`authentication_required`, or `action_required=True`): only the customer can
   complete it, whatever the advice code says about retrying.
3. The decline code, else the error code, gives a base class. A decline code this table does not list
   is `unknown`, not the `contact_bank` of its generic error code `card_declined` (which means "declined
   without any decline code"): a new code should reach the team as unknown, not as a guess.
4. An advice code then overrides a *vague* base (`contact_bank`, `technical`, `unknown`): it is the
   issuer's explicit word on whether retrying can work, which a generic decline does not carry.
   `generic_decline` + `do_not_try_again` -> `update_card`; `do_not_honor` + `try_again_later` ->
   `technical`. A *specific* base keeps its class: `expired_card` + `try_again_later` stays
   `update_card` (the card will not un-expire), `insufficient_funds` + `try_again_later` stays
   `insufficient_funds` (Stripe gives that advice for most insufficient-funds declines, and "top up"
   is the useful message), but `insufficient_funds` + `do_not_try_again` / `confirm_card_data`
   becomes `update_card`: the issuer says this card will not be approved.

Network codes (`network_decline_code`, `network_advice_code`) are kept on the `Decline` for the team but
do not classify: the same two digits mean different things on Visa and Mastercard, and Stripe already
translates them into `decline_code` / `advice_code`. Card-present codes (PIN errors) are not listed;
they cannot happen on an off-session subscription payment and land in `unknown`.

Customer-facing data: Stripe asks that `fraudulent`, `lost_card`, `stolen_card`, `pickup_card` and
`merchant_blacklist` be presented to the customer as a generic decline, so `as_message_data` says
`generic_decline` for them; the `Decline` itself (and team alerts) keep the real code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class DeclineClass(StrEnum):
    """What kind of failure a payment had, in terms of what fixes it."""

    UPDATE_CARD = "update_card"
    CONTACT_BANK = "contact_bank"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    TECHNICAL = "technical"
    AUTHENTICATION = "authentication"
    DO_NOT_CONTACT = "do_not_contact"
    UNKNOWN = "unknown"


# The table. Codes are Stripe decline codes unless a comment says otherwise; one code, one class.
_CODES: dict[DeclineClass, frozenset[str]] = {
    DeclineClass.UPDATE_CARD: frozenset(
        {
            "expired_card",
            "incorrect_number",
            "invalid_number",
            "invalid_expiry_month",
            "invalid_expiry_year",
            "incorrect_cvc",
            "invalid_cvc",
            "incorrect_zip",
            "lost_card",
            "stolen_card",
            "pickup_card",
            "restricted_card",
            "card_not_supported",
            "currency_not_supported",
            "new_account_information_available",  # the issuer has new details for this account: a new card
            "testmode_decline",  # a test card number used in live mode: a real card is needed
            "do_not_try_again",  # deprecated decline code; Stripe now sends it as an advice code
            "account_closed",  # error code (bank debits): the account is closed
            "no_account",  # error code (bank debits): the account does not exist
        }
    ),
    DeclineClass.CONTACT_BANK: frozenset(
        {
            "do_not_honor",
            "call_issuer",
            "generic_decline",
            "card_velocity_exceeded",
            "transaction_not_allowed",
            "withdrawal_count_limit_exceeded",
            "no_action_taken",
            "not_permitted",
            "service_not_allowed",
            "invalid_account",
            "invalid_amount",
            "card_declined",  # error code: declined, and the issuer gave no decline code
        }
    ),
    DeclineClass.INSUFFICIENT_FUNDS: frozenset({"insufficient_funds"}),
    DeclineClass.TECHNICAL: frozenset(
        {
            "processing_error",
            "issuer_not_available",
            "try_again_later",
            "reenter_transaction",
            "approve_with_id",
            "duplicate_transaction",
            "card_decline_rate_limit_exceeded",  # error code: Stripe pauses a card after many declines
        }
    ),
    DeclineClass.AUTHENTICATION: frozenset(
        {
            "authentication_required",
            "payment_intent_authentication_failure",  # error code
            "payment_intent_action_required",  # error code
            "invoice_payment_intent_requires_action",  # error code
        }
    ),
    DeclineClass.DO_NOT_CONTACT: frozenset(
        {
            "fraudulent",
            "merchant_blacklist",
            "revocation_of_authorization",
            "revocation_of_all_authorizations",
            "stop_payment_order",
            "security_violation",
            "debit_not_authorized",  # error code (bank debits): the customer disputed the mandate
            "highest_risk_level",  # charge outcome.reason: blocked by Radar's default block rule
        }
    ),
}

CLASS_OF: dict[str, DeclineClass] = {code: cls for cls, codes in _CODES.items() for code in codes}
"""Every known decline or error code -> its class."""

ADVICE: dict[str, DeclineClass] = {
    "do_not_try_again": DeclineClass.UPDATE_CARD,
    "confirm_card_data": DeclineClass.UPDATE_CARD,
    "try_again_later": DeclineClass.TECHNICAL,
}
"""Stripe's advice codes (`advice_code`: confirm_card_data, do_not_try_again, try_again_later)."""

GENERIC_ERROR = "card_declined"
"""The error code of every issuer decline: it says something only when no decline code came with it."""

# Bases an advice code may override (precedence rule 4).
_VAGUE = frozenset({DeclineClass.CONTACT_BANK, DeclineClass.TECHNICAL, DeclineClass.UNKNOWN})

# Stripe: "present as you would the generic_decline" for these; the customer never sees the real reason.
CUSTOMER_HIDDEN = frozenset({"fraudulent", "lost_card", "stolen_card", "pickup_card", "merchant_blacklist"})

DESCRIPTIONS: dict[DeclineClass, str] = {
    DeclineClass.UPDATE_CARD: "the card on file will not work again; the customer needs to add a new one",
    DeclineClass.CONTACT_BANK: "the bank declined without a fixable reason; the customer should contact their bank",
    DeclineClass.INSUFFICIENT_FUNDS: "insufficient funds",
    DeclineClass.TECHNICAL: "a technical failure; the next automatic retry will probably succeed",
    DeclineClass.AUTHENTICATION: "the bank wants the customer to authenticate the payment (3-D Secure)",
    DeclineClass.DO_NOT_CONTACT: "a fraud signal or a withdrawn authorization",
    DeclineClass.UNKNOWN: "no decline reason known",
}
"""One plain sentence per class, for team alerts and reports."""


def _key(value: str | None) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def classify(
    code: str | None,
    decline_code: str | None,
    advice_code: str | None,
    *,
    action_required: bool = False,
) -> DeclineClass:
    """The class of one failed payment attempt, by the precedence in this module's docstring.

    `action_required` is the PaymentIntent-needs-authentication path (status `requires_action`, or the
    `invoice.payment_action_required` event), which carries no decline code of its own.
    """
    decline, error, advice = _key(decline_code), _key(code), _key(advice_code)
    reported = [c for c in (decline, error) if c is not None]
    if any(CLASS_OF.get(c) is DeclineClass.DO_NOT_CONTACT for c in reported):
        return DeclineClass.DO_NOT_CONTACT
    if action_required or any(CLASS_OF.get(c) is DeclineClass.AUTHENTICATION for c in reported):
        return DeclineClass.AUTHENTICATION
    base = CLASS_OF.get(decline) if decline else None
    if base is None and error is not None and not (decline and error == GENERIC_ERROR):
        base = CLASS_OF.get(error)
    if base is None:
        base = DeclineClass.UNKNOWN
    advised = ADVICE.get(advice) if advice else None
    if advised is None:
        return base
    if base in _VAGUE:
        return advised
    if base is DeclineClass.INSUFFICIENT_FUNDS and advised is DeclineClass.UPDATE_CARD:
        return DeclineClass.UPDATE_CARD
    return base


@dataclass(frozen=True)
class Decline:
    """The latest payment attempt's failure as the provider reported it, with its class."""

    decline_class: DeclineClass
    code: str | None = None
    decline_code: str | None = None
    advice_code: str | None = None
    network_decline_code: str | None = None
    network_advice_code: str | None = None

    @classmethod
    def of(
        cls,
        code: str | None = None,
        decline_code: str | None = None,
        advice_code: str | None = None,
        *,
        network_decline_code: str | None = None,
        network_advice_code: str | None = None,
        action_required: bool = False,
    ) -> Decline:
        """Classify the reported codes and keep them together."""
        return cls(
            decline_class=classify(code, decline_code, advice_code, action_required=action_required),
            code=code,
            decline_code=decline_code,
            advice_code=advice_code,
            network_decline_code=network_decline_code,
            network_advice_code=network_advice_code,
        )

    @property
    def reason(self) -> str | None:
        """The most specific code known: the decline code, else the error code."""
        return self.decline_code or self.code

    @property
    def description(self) -> str:
        """The class in one plain sentence (for the team, not the customer)."""
        return DESCRIPTIONS[self.decline_class]


UNKNOWN = Decline(DeclineClass.UNKNOWN)
"""Nothing known about why the payment failed."""


def template_keys(step_key: str, decline_class: DeclineClass) -> tuple[str, ...]:
    """Template names to try in order: the class-specific one, then the step's own.

    ("first", insufficient_funds) -> ("first.insufficient_funds", "first"); `unknown` has no variant of
    its own, so ("first", unknown) -> ("first",). `do_not_contact` -> (): no customer message exists
    for it, so a caller that finds no template sends nothing rather than a generic dunning email.
    """
    if not step_key or "." in step_key:
        raise ValueError(f"template step key {step_key!r} must be a plain name such as 'first'")
    decline_class = DeclineClass(decline_class)
    if decline_class is DeclineClass.DO_NOT_CONTACT:
        return ()
    if decline_class is DeclineClass.UNKNOWN:
        return (step_key,)
    return (f"{step_key}.{decline_class.value}", step_key)


TECHNICAL_RETRY_GRACE = timedelta(hours=1)
"""After Stripe's scheduled retry, time for it to run and for its outcome webhook to arrive."""

TECHNICAL_MAX_WAIT = timedelta(days=3)
"""A retry scheduled further out than this is no quick blip: the customer hears at the usual time."""


def first_message_at(
    decline_class: DeclineClass,
    failed_at: datetime,
    next_payment_attempt: datetime | None,
    default: datetime,
    *,
    grace: timedelta = TECHNICAL_RETRY_GRACE,
    max_wait: timedelta = TECHNICAL_MAX_WAIT,
) -> datetime | None:
    """When the first customer message of a failure episode is due; None means never (no message).

    `technical` waits until `grace` after the provider's next scheduled retry (the sender re-reads the
    invoice, so a retry that succeeded sends nothing), never earlier than `default`, and falls back to
    `default` when no retry is scheduled, the retry time is not after the failure (stale data) or is
    more than `max_wait` after it. `do_not_contact` -> None. Every other class -> `default`.
    All datetimes are naive UTC, as stored everywhere in the app.
    """
    decline_class = DeclineClass(decline_class)
    if decline_class is DeclineClass.DO_NOT_CONTACT:
        return None
    if (
        decline_class is DeclineClass.TECHNICAL
        and next_payment_attempt is not None
        and failed_at < next_payment_attempt <= failed_at + max_wait
    ):
        return max(default, next_payment_attempt + grace)
    return default


def as_message_data(decline: Decline | None) -> dict[str, str]:
    """The decline-aware message data of the design's contract: `declineClass`, `declineCode`, `adviceCode`.

    Empty strings when unknown. `declineCode` is the most specific code (decline code, else error
    code), except that codes Stripe says never to reveal to the customer read `generic_decline`.
    """
    if decline is None:
        decline = UNKNOWN
    reason = decline.reason or ""
    if _key(reason) in CUSTOMER_HIDDEN:
        reason = "generic_decline"
    return {
        "declineClass": decline.decline_class.value,
        "declineCode": reason,
        "adviceCode": decline.advice_code or "",
    }

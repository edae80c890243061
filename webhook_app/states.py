"""Every status a stored row can have, spelled once, and the groupings the code and finance rely on.

Statuses are `StrEnum`s: stored as their plain string value (the same on SQLite and PostgreSQL) and
equal to it, so `case.status == CaseStatus.OPEN` and a query on `"open"` agree.
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    """An inbox event: pending -> processing -> done | ignored | failed."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    IGNORED = "ignored"  # stored but not acted on: an event type we do not handle, or the other mode
    FAILED = "failed"  # stopped with its reason in last_error; `events replay` puts it back


class CaseStatus(StrEnum):
    """A dunning case: one per invoice (per provider)."""

    OPEN = "open"  # messages are scheduled
    PAUSED = "paused"  # the customer updated the payment method; waiting for the provider's retry
    RECOVERED = "recovered"  # paid after a failure: a ledger row
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"  # written off
    CANCELED = "canceled"  # the subscription ended for non-payment
    PAID = "paid"  # paid before we saw a failure; a late failure turns it into a recovery
    ERROR = "error"  # the provider no longer knows the customer or invoice


class NotificationStatus(StrEnum):
    """An outbox row: pending | held -> sending -> sent | skipped | canceled | failed."""

    PENDING = "pending"
    HELD = "held"  # an operator must act (credentials, portal configuration); retried later
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"  # nothing to send any more (paid meanwhile, case closed)
    CANCELED = "canceled"  # withdrawn before sending (case closed or paused)
    FAILED = "failed"


class NotificationKind(StrEnum):
    """What a customer message asks for."""

    PAYMENT_FAILED = "payment_failed"  # update the payment method
    ACTION_REQUIRED = "action_required"  # authenticate the payment (3-D Secure) on the hosted invoice page


class LedgerKind(StrEnum):
    """A recovery ledger row: a recovery, or a correction offsetting one."""

    RECOVERY = "recovery"
    REFUND = "refund"
    CREDIT_NOTE = "credit_note"


class PageChargeStatus(StrEnum):
    """A charge our own update page asks the provider for (Braintree): one submission of the card form.

    started -> charging -> charged | declined, or started -> declined | not_due | failed; a charge
    whose outcome was lost (timeout, killed worker) stays `charging` until reconciled from the provider.
    """

    STARTED = "started"  # the card is being saved and the subscription moved onto it; nothing charged yet
    CHARGING = "charging"  # the charge was sent (recorded first: a lost answer is never charged again)
    CHARGED = "charged"
    DECLINED = "declined"  # the card or the charge was declined: the customer may try another card
    NOT_DUE = "not_due"  # card saved, nothing left to charge (paid meanwhile)
    FAILED = "failed"  # never charged: the provider was unreachable, or the submission was abandoned


class SettlementStatus(StrEnum):
    """Where a recovery row's settled figures (the provider's balance transaction) stand.

    Corrections and rows recorded before settlement tracking have none (NULL).
    """

    PENDING = "pending"  # to be looked up by the worker, outside any handler's transaction
    SETTLED = "settled"  # amount, fee, net and exchange rate in the payout currency are on the row
    NONE = "none"  # no charge through the provider paid the invoice (out of band, credit balance)
    UNAVAILABLE = "unavailable"  # the provider cannot say (no such report, refused, or never settled)


class Attribution(StrEnum):
    """Why the money came back."""

    LINK_CLICK = "link_click"  # the customer followed our link first
    PROVIDER_RETRY = "provider_retry"  # the billing system's own retry succeeded
    OUT_OF_BAND = "out_of_band"  # marked paid, credit, bank transfer


# Groupings, defined once.
CASE_OPEN = frozenset({CaseStatus.OPEN, CaseStatus.PAUSED})  # still being chased, money at risk
CASE_LOST = frozenset({CaseStatus.VOID, CaseStatus.UNCOLLECTIBLE, CaseStatus.CANCELED})
# Closed one way or another by the end of a period (finance: "open at period end" excludes these).
CASE_SETTLED = frozenset({CaseStatus.RECOVERED, CaseStatus.ERROR, *CASE_LOST})
CASE_CLOSED_AS = {  # an invoice status the billing system reports -> the case status it closes as
    "paid": CaseStatus.RECOVERED,
    "void": CaseStatus.VOID,
    "uncollectible": CaseStatus.UNCOLLECTIBLE,
    "canceled": CaseStatus.CANCELED,
}
# A case has at most one page charge in these at a time (a partial unique index): never two charges.
PAGE_CHARGE_LIVE = frozenset({PageChargeStatus.STARTED, PageChargeStatus.CHARGING, PageChargeStatus.CHARGED})
NOTIFICATION_DUE = frozenset({NotificationStatus.PENDING, NotificationStatus.HELD})
NOTIFICATION_UNSENT = frozenset({NotificationStatus.PENDING, NotificationStatus.HELD, NotificationStatus.SENDING})

"""What our dunning case is for a Braintree subscription: one failure *episode*, named by its first failed charge.

Braintree has no invoice. A failed recurring charge leaves the subscription Past Due with a `balance`,
and every automatic retry (or each new billing cycle while still past due) adds another failed
transaction, until a charge succeeds (the subscription goes Active again) or the merchant's rules cancel
it. So one case covers one run of failed charges, and its invoice id is

    "<subscription id>:<id of the run's first failed transaction>"

stable across every retry and every notification about that run, and new when the subscription fails
again after a successful charge. The transactions come from the subscription object itself (newest
first); webhooks carry its 20 most recent ones
(https://developer.paypal.com/braintree/docs/reference/general/webhooks/subscription/python), so a run
longer than 20 failed charges would be named by the oldest one still listed: merchants' retry rules
cancel or settle subscriptions long before that.

Only sales count as charges (a refund is a `credit`); voided and authorization-expired sales neither
fail nor pay and are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_app.errors import ResourceMissing

# https://developer.paypal.com/braintree/docs/reference/response/transaction/python#status
FAILED = frozenset({"processor_declined", "gateway_rejected", "failed", "settlement_declined"})
SUCCEEDED = frozenset(
    {
        "authorized",
        "authorizing",
        "submitted_for_settlement",
        "settling",
        "settled",
        "settlement_pending",
        "settlement_confirmed",
    }
)
SEPARATOR = ":"

Txn = Mapping[str, Any]


@dataclass(frozen=True)
class Episode:
    """A run of failed charges of one subscription, and the successful charge that ended it (if any)."""

    subscription_id: str
    failures: tuple[Txn, ...]  # newest first; never empty
    payment: Txn | None = None

    @property
    def first_failure(self) -> Txn:
        return self.failures[-1]

    @property
    def newest_failure(self) -> Txn:
        return self.failures[0]

    @property
    def invoice_id(self) -> str:
        """The case's invoice id: the subscription and the run's first failed transaction."""
        return invoice_id(self.subscription_id, str(self.first_failure["id"]))


def invoice_id(subscription_id: str, first_failed_transaction_id: str) -> str:
    """`<subscription>:<first failed transaction>`."""
    return f"{subscription_id}{SEPARATOR}{first_failed_transaction_id}"


def split(invoice: str) -> tuple[str, str]:
    """(subscription id, first failed transaction id) of one of our Braintree invoice ids."""
    subscription_id, separator, transaction_id = invoice.rpartition(SEPARATOR)
    if not separator or not subscription_id or not transaction_id:
        raise ResourceMissing("not a Braintree subscription episode id", kind="invoice")
    return subscription_id, transaction_id


def _charges(transactions: Sequence[Txn]) -> list[Txn]:
    """Sales that failed or succeeded, newest first."""
    return [
        t
        for t in transactions
        if t.get("id") and t.get("type") in (None, "sale") and (t.get("status") in FAILED | SUCCEEDED)
    ]


def _failed(txn: Txn) -> bool:
    return txn.get("status") in FAILED


def latest(subscription: Mapping[str, Any]) -> Episode | None:
    """The episode the subscription is in, or the one its newest charge just ended; None when its newest
    charges succeeded without a failure before them (a renewal, not a recovery)."""
    charges = _charges(subscription.get("transactions") or [])
    payment = charges[0] if charges and not _failed(charges[0]) else None
    run: list[Txn] = []
    for txn in charges[1 if payment else 0 :]:
        if not _failed(txn):
            break
        run.append(txn)
    if not run:
        return None
    return Episode(str(subscription["id"]), tuple(run), payment)


def find(subscription: Mapping[str, Any], first_failed_transaction_id: str) -> Episode | None:
    """The episode that began with that failed transaction, as the subscription lists it now (None when
    it no longer lists it)."""
    charges = _charges(subscription.get("transactions") or [])
    index = next((i for i, t in enumerate(charges) if t["id"] == first_failed_transaction_id), None)
    if index is None or not _failed(charges[index]):
        return None
    start = index
    while start > 0 and _failed(charges[start - 1]):
        start -= 1
    payment = charges[start - 1] if start > 0 else None
    return Episode(str(subscription["id"]), tuple(charges[start : index + 1]), payment)

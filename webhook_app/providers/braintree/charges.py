"""What a submission of our Braintree update page does, charging the customer at most once.

The steps (https://developer.paypal.com/braintree/docs/guides/drop-in/overview/python): save the Drop-in
nonce as the customer's default card, verified first (`payment_method.create`); move the past-due
subscription onto it (`subscription.update`); re-read the subscription and, only while it is still Past
Due, charge its balance once (`subscription.retry_charge`). Braintree's charge is not idempotent: a
second POST /transactions is a second charge. So every submission is a `page_charges` row written before
anything else:
- unique on the form it came from (`form_key`): a double submit, a reload or a retried request finds
  the first one's row and is shown its outcome, never processed again;
- at most one live row (started / charging / charged) per case, by a partial unique index: two forms
  submitted at once (two tabs) cannot both charge, and once charged, nothing charges again;
- `charging` is committed before the charge is sent, with the subscription's newest transaction id: if
  the answer is lost (timeout, killed worker), `reconcile` reads Braintree's transaction list instead of
  charging again.
A declined card (verification or charge) ends the row as `declined`: the customer may try another card.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from webhook_app import dunning
from webhook_app.errors import ConfigurationNeeded, PermanentError, RecoveryError, ResourceMissing
from webhook_app.models import DunningCase, PageCharge
from webhook_app.providers.braintree import episodes
from webhook_app.providers.braintree.client import PAST_DUE, BraintreeClient, decline_message
from webhook_app.services import Services
from webhook_app.states import PAGE_CHARGE_LIVE, PageChargeStatus

log = logging.getLogger(__name__)

PROVIDER = "braintree"
# Longer than any request still working on a submission can last (gunicorn's timeout is 30 s): after
# this, a submission that never reached the charge was abandoned, and one that did has an answer in
# Braintree's transaction list.
STALE_AFTER = timedelta(minutes=2)
MAX_SUBMISSIONS_PER_HOUR = 6  # per case: a customer trying cards, not a script testing stolen ones

UNREACHABLE = "We could not reach our payment processor just now. Nothing was charged: please try again."
CARD_REFUSED = "We could not use this card. Please check the details or use another card."


class ChargeBusy(Exception):
    """Another submission for this case is being processed, or already charged it."""

    def __init__(self, charge: PageCharge | None):
        super().__init__("another submission is live for this case")
        self.charge = charge  # None: it finished in between, and the customer may simply submit again


def by_form_key(svc: Services, key: str) -> PageCharge | None:
    """The submission of that rendered form, if it was submitted."""
    with svc.db.session() as s:
        row = s.scalars(select(PageCharge).where(PageCharge.form_key == key)).one_or_none()
        s.expunge_all()
    return row


def live(svc: Services, case_id: int) -> PageCharge | None:
    """The case's live submission (started, charging or charged), if any."""
    with svc.db.session() as s:
        row = s.scalars(
            select(PageCharge).where(PageCharge.case_id == case_id, PageCharge.status.in_(PAGE_CHARGE_LIVE))
        ).one_or_none()
        s.expunge_all()
    return row


def recent_submissions(svc: Services, case_id: int, now: datetime) -> int:
    """How many times the case's form was submitted in the last hour."""
    with svc.db.session() as s:
        return int(
            s.scalar(
                select(func.count(PageCharge.id)).where(
                    PageCharge.case_id == case_id, PageCharge.created_at > now - timedelta(hours=1)
                )
            )
            or 0
        )


def claim(svc: Services, case: DunningCase, key: str) -> tuple[PageCharge, bool]:
    """Record a submission before acting on it: (row, True) when it is new, (its row, False) for a repeat.

    Raises ChargeBusy when another submission for the case is live (the partial unique index refused).
    """
    now = svc.clock.now()
    try:
        with svc.db.session() as s:
            row = PageCharge(
                provider=PROVIDER,
                case_id=case.id,
                form_key=key,
                status=PageChargeStatus.STARTED,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            s.expunge(row)
        return row, True
    except IntegrityError:
        repeat = by_form_key(svc, key)
        if repeat is not None:
            return repeat, False
        raise ChargeBusy(live(svc, case.id)) from None


def _move(svc: Services, charge: PageCharge, expected: frozenset[str], **values: Any) -> PageCharge | None:
    """Compare-and-set: change the row only if it is still in one of `expected`; the new row, or None."""
    with svc.db.session() as s:
        result = s.execute(
            update(PageCharge)
            .where(PageCharge.id == charge.id, PageCharge.status.in_(expected))
            .values(updated_at=svc.clock.now(), **values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = s.get(PageCharge, charge.id)
        s.expunge_all()
    return row


def _current(svc: Services, charge: PageCharge) -> PageCharge:
    with svc.db.session() as s:
        row = s.get(PageCharge, charge.id)
        assert row is not None  # rows are never deleted
        s.expunge_all()
    return row


def _end(svc: Services, charge: PageCharge, status: PageChargeStatus, **values: Any) -> PageCharge:
    """Finish a submission that has not been sent to the charge (started -> declined / not_due / failed)."""
    moved = _move(svc, charge, frozenset({PageChargeStatus.STARTED}), status=status, **values)
    return moved if moved is not None else _current(svc, charge)


def submit_card(
    svc: Services, client: BraintreeClient, case: DunningCase, charge: PageCharge, nonce: str
) -> PageCharge:
    """Run a new submission's steps; returns its row in its final (or, if the answer was lost, pending) state."""
    context = {"case_id": case.id, "provider": PROVIDER}
    subscription_id = charge_subscription(case)
    # 1. The card: verified, then saved as the customer's default. Nothing is charged by this.
    try:
        added = client.add_payment_method(case.customer_id, nonce)
    except (ResourceMissing, ConfigurationNeeded):
        _end(svc, charge, PageChargeStatus.FAILED, message=UNREACHABLE, detail="customer or credentials")
        raise
    except PermanentError as exc:
        return _end(svc, charge, PageChargeStatus.DECLINED, message=CARD_REFUSED, detail=str(exc))
    except RecoveryError as exc:
        return _end(svc, charge, PageChargeStatus.FAILED, message=UNREACHABLE, detail=str(exc))
    if not added["ok"]:
        log.info("update page: card declined at verification", extra=context)
        detail = " ".join(str(v) for v in (added.get("code"), added.get("processor_response_code")) if v)
        return _end(svc, charge, PageChargeStatus.DECLINED, message=added["message"], detail=detail or None)
    label = " ending ".join(str(v) for v in (added.get("card_type") or "Card", added.get("last_4")) if v)
    started = frozenset({PageChargeStatus.STARTED})
    charge = _move(svc, charge, started, payment_method_token=added["token"], card_label=label[:100]) or charge

    # 2. The subscription bills the new card from now on (Braintree's own retries too).
    try:
        client.move_subscription_to(subscription_id, added["token"])
        subscription = client.find_subscription(subscription_id)
    except RecoveryError as exc:
        return _end(svc, charge, PageChargeStatus.FAILED, message=UNREACHABLE, detail=str(exc))

    # 3. Charge the balance once, only while the subscription is still Past Due.
    if subscription["status"] != PAST_DUE:
        ended = _end(svc, charge, PageChargeStatus.NOT_DUE, detail=f"subscription is {subscription['status']}")
        settle(svc, case)
        return ended
    newest = next((t["id"] for t in subscription["transactions"] if t.get("id")), None)
    charging = _move(
        svc,
        charge,
        started,
        status=PageChargeStatus.CHARGING,
        before_transaction_id=newest,
        amount=subscription.get("balance_minor"),
        currency=(subscription.get("currency") or "").lower()[:3] or None,
    )
    if charging is None:  # reconciled as abandoned meanwhile (a very slow request): never charge then
        return _current(svc, charge)
    try:
        result = client.retry_charge(subscription_id)
    except PermanentError as exc:
        # Refused before anything was charged (no longer Past Due, or a validation error).
        log.warning("update page: retry refused: %s", exc, extra=context)
        return _refused(svc, client, case, charging, str(exc))
    except RecoveryError as exc:
        # The answer was lost: the charge may or may not have happened. Braintree's list will say.
        log.warning("update page: charge outcome unknown, reconciling: %s", exc, extra=context)
        return reconcile(svc, client, case, charging)
    if result["ok"]:
        charged = _move(
            svc,
            charging,
            frozenset({PageChargeStatus.CHARGING}),
            status=PageChargeStatus.CHARGED,
            transaction_id=result["transaction_id"],
        )
        log.info("update page: balance charged", extra=context)
        settle(svc, case)
        return charged or _current(svc, charging)
    log.info("update page: charge declined", extra=context)
    declined = _move(
        svc,
        charging,
        frozenset({PageChargeStatus.CHARGING}),
        status=PageChargeStatus.DECLINED,
        transaction_id=result["transaction_id"],
        message=result["message"],
        detail=" ".join(str(v) for v in (result["processor_response_code"], result["processor_response_text"]) if v),
    )
    return declined or _current(svc, charging)


def _refused(svc: Services, client: BraintreeClient, case: DunningCase, charge: PageCharge, why: str) -> PageCharge:
    try:
        status = client.find_subscription(charge_subscription(case))["status"]
    except RecoveryError:
        status = None
    outcome = PageChargeStatus.NOT_DUE if status not in (PAST_DUE, None) else PageChargeStatus.FAILED
    moved = _move(
        svc,
        charge,
        frozenset({PageChargeStatus.CHARGING}),
        status=outcome,
        message=None if outcome == PageChargeStatus.NOT_DUE else UNREACHABLE,
        detail=why[:2000],
    )
    settle(svc, case)
    return moved or _current(svc, charge)


def charge_subscription(case: DunningCase) -> str:
    """The subscription a case's charges are for."""
    return case.subscription_id or episodes.split(case.invoice_id)[0]


def reconcile(svc: Services, client: BraintreeClient, case: DunningCase, charge: PageCharge) -> PageCharge:
    """Settle a live submission whose outcome we do not know, from Braintree's own record; never charges.

    `started` and stale: abandoned before the charge (it is committed as `charging` first), so failed.
    `charging`: a charge newer than the one recorded before it means charged (success) or declined;
    none, and stale: the charge never reached Braintree, so failed. Otherwise it is still pending.
    """
    now = svc.clock.now()
    stale = now - charge.updated_at > STALE_AFTER
    if charge.status == PageChargeStatus.STARTED:
        if stale:
            moved = _move(
                svc, charge, frozenset({PageChargeStatus.STARTED}), status=PageChargeStatus.FAILED, detail="abandoned"
            )
            return moved or _current(svc, charge)
        return charge
    if charge.status != PageChargeStatus.CHARGING:
        return charge
    try:
        subscription = client.find_subscription(charge_subscription(case))
    except RecoveryError:
        return charge  # still unknown; the next visit asks again
    newer = _newer_charges(subscription["transactions"], charge.before_transaction_id)
    success = next((t for t in newer if t.get("status") in episodes.SUCCEEDED), None)
    charging = frozenset({PageChargeStatus.CHARGING})
    if success is not None:
        moved = _move(svc, charge, charging, status=PageChargeStatus.CHARGED, transaction_id=success["id"])
        settle(svc, case)
    elif newer:
        failure = newer[0]
        moved = _move(
            svc,
            charge,
            charging,
            status=PageChargeStatus.DECLINED,
            transaction_id=failure["id"],
            message=decline_message(failure.get("processor_response_code")),
        )
    elif stale:
        moved = _move(svc, charge, charging, status=PageChargeStatus.FAILED, detail="no charge reached Braintree")
    else:
        return charge
    return moved or _current(svc, charge)


def _newer_charges(transactions: list[dict[str, Any]], before: str | None) -> list[dict[str, Any]]:
    """Sales listed before (newer than) `before`, newest first; none if `before` is not listed."""
    ids = [t.get("id") for t in transactions]
    if before is not None and before not in ids:
        return []
    newer = transactions if before is None else transactions[: ids.index(before)]
    return [
        t for t in newer if t.get("type") in (None, "sale") and t.get("status") in episodes.FAILED | episodes.SUCCEEDED
    ]


def settle(svc: Services, case: DunningCase) -> None:
    """Close the case from Braintree's own view once paid (the webhook may come later, or not at all)."""
    try:
        invoice = svc.billing(PROVIDER).retrieve_invoice(case.invoice_id)
    except (RecoveryError, ConfigurationNeeded) as exc:
        log.warning("could not settle the case after the update page: %s", exc, extra={"case_id": case.id})
        return
    if invoice.is_closed:
        with svc.db.session() as s:
            dunning.settle(s, invoice, svc.clock.now())

"""Corrections to recovered revenue: a refund or credit note on a recovered invoice is a new ledger row.

The ledger is append-only. Money given back after a recovery is recorded as an offsetting (negative)
row dated when it was given back, with its own `entry_key`, so a closed month's totals never change
and every figure can be audited row by row. Only invoices with a recovery row get corrections.

Two Stripe events describe money given back on an invoice, and the same refund can appear in both:
- `charge.refunded`: the Charge carries `invoice` only before API 2025-03-31.basil ("Remove support for
  invoice on Charge and PaymentIntent"). `amount_refunded` is cumulative, so the row's key is
  `refund:<charge>:<cumulative amount>` and the row holds what was not yet recorded for that charge:
  replays and out-of-order deliveries add nothing twice.
- `credit_note.created` (https://docs.stripe.com/api/credit_notes/object): carries `invoice`, `amount`
  and, for a paid invoice, `post_payment_amount` made of refunds, customer-balance credit and
  out-of-band credit. Row key `credit_note:<id>`. Before basil, the refund part is left out because
  `charge.refunded` records it; from basil on, refunds can only be tied to the invoice here, so the
  whole post-payment amount counts.
Whatever the sources, corrections never take an invoice below zero (a guard against double counting
across an API-version upgrade). `credit_note.voided` appends a positive row that reverses the note.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webhook_app.clock import from_unix
from webhook_app.errors import BadPayload, TransientError
from webhook_app.inbox import insert_if_absent
from webhook_app.models import DunningCase, LedgerEntry

log = logging.getLogger(__name__)

BASIL = "2025-03-31"  # API versions sort as strings by their date prefix


def _ref(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object with an `id`."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _int(obj: Mapping, name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise BadPayload(f"{obj.get('object', 'object')} field {name!r} must be a non-negative integer")
    return value


def _object(event: dict, kind: str) -> Mapping:
    obj = event.get("data", {}).get("object")
    if not isinstance(obj, Mapping) or obj.get("object", kind) != kind or not isinstance(obj.get("id"), str):
        raise BadPayload(f"event data.object is not a {kind}")
    return obj


def _is_basil_or_later(event: dict) -> bool:
    version = event.get("api_version")
    return version is None or str(version) >= BASIL


def _recovery(session: Session, invoice_id: str) -> LedgerEntry | None:
    return session.scalars(select(LedgerEntry).where(LedgerEntry.entry_key == f"recovery:{invoice_id}")).one_or_none()


def _recovery_or_wait(session: Session, invoice_id: str, source: str) -> LedgerEntry | None:
    """The invoice's recovery row; None if it never was a recovery.

    Money can only be refunded once paid, so a refund for an invoice whose case is still open means the
    `invoice.paid` event has not been processed yet (events are unordered): retry later.
    """
    recovery = _recovery(session, invoice_id)
    if recovery is not None:
        return recovery
    status = session.scalar(select(DunningCase.status).where(DunningCase.invoice_id == invoice_id))
    if status in DunningCase.OPEN_STATUSES:
        raise TransientError(f"{source} for {invoice_id} before its payment was recorded; retrying later")
    return None


def _lock(session: Session, recovery: LedgerEntry) -> None:
    """Serialize corrections of one invoice (SQLite already has one writer at a time)."""
    if recovery.case_id is not None:
        session.execute(select(DunningCase.id).where(DunningCase.id == recovery.case_id).with_for_update())


def _corrections_total(session: Session, invoice_id: str, key_prefix: str | None = None) -> int:
    query = select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
        LedgerEntry.invoice_id == invoice_id, LedgerEntry.kind != "recovery"
    )
    if key_prefix is not None:
        query = query.where(LedgerEntry.entry_key.startswith(key_prefix, autoescape=True))
    return int(session.scalar(query))


def _insert(
    session: Session, recovery: LedgerEntry, *, key: str, kind: str, amount: int, at: datetime, now: datetime
) -> bool:
    row = dict(
        entry_key=key,
        kind=kind,
        case_id=recovery.case_id,
        invoice_id=recovery.invoice_id,
        customer_id=recovery.customer_id,
        amount=amount,
        currency=recovery.currency,
        livemode=recovery.livemode,
        first_failed_at=None,
        recovered_at=at,
        seconds_to_recover=None,
        attempts=0,
        messages_sent=0,
        attribution=recovery.attribution,
        first_message_at=None,
        first_click_at=None,
        seconds_message_to_click=None,
        seconds_click_to_payment=None,
        created_at=now,
    )
    inserted = insert_if_absent(session, LedgerEntry.__table__, row, ["entry_key"])
    if inserted:
        log.info("ledger correction recorded", extra={"invoice_id": recovery.invoice_id, "entry_key": key})
    return bool(inserted)


def offset(
    session: Session, recovery: LedgerEntry, *, key: str, kind: str, given_back: int, at: datetime, now: datetime
) -> int:
    """Append a row taking `given_back` (minor units, positive) off the recovery; returns the amount taken.

    Capped at what the invoice still counts as recovered, so corrections never make it negative.
    """
    if given_back <= 0:
        return 0
    remaining = recovery.amount + _corrections_total(session, recovery.invoice_id)
    amount = min(given_back, remaining)
    if amount <= 0:
        log.warning(
            "correction ignored: the invoice's recovery is already fully offset",
            extra={"invoice_id": recovery.invoice_id, "entry_key": key},
        )
        return 0
    return amount if _insert(session, recovery, key=key, kind=kind, amount=-amount, at=at, now=now) else 0


def _same_currency(recovery: LedgerEntry, obj: Mapping, source: str) -> bool:
    currency = obj.get("currency")
    if isinstance(currency, str) and currency.lower() != recovery.currency:
        log.warning(
            "%s in %s for a recovery in %s ignored: amounts in different currencies cannot offset",
            source,
            currency.lower(),
            recovery.currency,
            extra={"invoice_id": recovery.invoice_id},
        )
        return False
    return True


def charge_refunded(session: Session, event: dict, ctx) -> None:
    """A charge was (partly) refunded: offset the invoice's recovery by what is newly refunded."""
    charge = _object(event, "charge")
    invoice_id = _ref(charge.get("invoice"))
    if invoice_id is None:
        # Since 2025-03-31.basil a Charge no longer names its invoice; credit_note.created covers it.
        log.info("charge.refunded without an invoice: nothing to correct", extra={"charge_id": charge["id"]})
        return
    refunded = _int(charge, "amount_refunded")
    recovery = _recovery_or_wait(session, invoice_id, "refund")
    if recovery is None or not _same_currency(recovery, charge, "refund"):
        return
    _lock(session, recovery)
    prefix = f"refund:{charge['id']}:"
    already = -_corrections_total(session, invoice_id, prefix)
    offset(
        session,
        recovery,
        key=f"{prefix}{refunded}",
        kind="refund",
        given_back=refunded - already,
        at=from_unix(event["created"]),
        now=ctx.now,
    )


def _post_payment_amount(note: Mapping) -> int:
    if "post_payment_amount" in note and note["post_payment_amount"] is not None:
        return _int(note, "post_payment_amount")
    if note.get("type") == "pre_payment":
        return 0  # reduced what was owed before payment: nothing recovered is given back
    return _int(note, "amount")


def _refund_part(note: Mapping, post_payment: int) -> int:
    """How much of a credit note went back as refunds (which `charge.refunded` also reports)."""
    refunds = note.get("refunds")
    if isinstance(refunds, list) and refunds:
        return sum(_int(r, "amount_refunded", 0) for r in refunds if isinstance(r, Mapping))
    refund = note.get("refund")
    if isinstance(refund, Mapping) and isinstance(refund.get("amount"), int):
        return refund["amount"]
    if isinstance(refund, str):
        # An unexpanded refund id: all but the out-of-band part went back through the refund.
        out_of_band = note.get("out_of_band_amount") or 0
        return max(0, post_payment - (out_of_band if isinstance(out_of_band, int) else 0))
    return 0


def credit_note_created(session: Session, event: dict, ctx) -> None:
    """A credit note on a recovered invoice: offset the recovery by its post-payment amount."""
    note = _object(event, "credit_note")
    invoice_id = _ref(note.get("invoice"))
    if invoice_id is None:
        raise BadPayload("credit note has no invoice")
    if note.get("status") == "void":
        return
    recovery = _recovery_or_wait(session, invoice_id, "credit note")
    if recovery is None or not _same_currency(recovery, note, "credit note"):
        return
    _lock(session, recovery)
    given_back = _post_payment_amount(note)
    if not _is_basil_or_later(event):
        given_back -= _refund_part(note, given_back)
    # Dated when issued (`created`), never `effective_at`, which can be backdated into a closed month.
    created = note.get("created") if isinstance(note.get("created"), int) else event["created"]
    offset(
        session,
        recovery,
        key=f"credit_note:{note['id']}",
        kind="credit_note",
        given_back=given_back,
        at=from_unix(created),
        now=ctx.now,
    )


def credit_note_voided(session: Session, event: dict, ctx) -> None:
    """A voided credit note no longer gives money back: append a row reversing its correction."""
    note = _object(event, "credit_note")
    original = session.scalars(
        select(LedgerEntry).where(LedgerEntry.entry_key == f"credit_note:{note['id']}")
    ).one_or_none()
    if original is None or original.amount >= 0:
        return
    recovery = _recovery(session, original.invoice_id)
    if recovery is None:
        return
    _lock(session, recovery)
    _insert(
        session,
        recovery,
        key=f"credit_note_void:{note['id']}",
        kind="credit_note",
        amount=-original.amount,
        at=from_unix(event["created"]),
        now=ctx.now,
    )

"""Test fakes of our own protocols (Billing, Messenger): used by unit tests, never SDK patching.

tests/unit/test_conformance.py checks them against the protocols, like the real implementations.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace

from webhook_app.adapters import Message, SendResult
from webhook_app.domain import InvoiceView
from webhook_app.providers.base import LinkTarget, UpdateLink
from webhook_app.providers.stripe.translate import invoice_view


class FakeTime:
    """A monotonic clock whose sleep() just moves time forward and records the wait (rate limiters)."""

    def __init__(self, start: float = 0.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class FakeBilling:
    """A billing provider's runtime port: invoices in a dict (Stripe-shaped when put), numbered
    portal sessions; can be told to fail."""

    def __init__(self):
        self.invoices: dict[str, InvoiceView] = {}
        self.sessions: list[dict] = []
        self.fail_with: Exception | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def put(self, obj: dict) -> InvoiceView:
        view = invoice_view(obj)
        self.invoices[view.id] = view
        return view

    def set_status(self, invoice_id: str, status: str, **changes) -> None:
        self.invoices[invoice_id] = replace(self.invoices[invoice_id], status=status, **changes)

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        if self.fail_with:
            raise self.fail_with
        return self.invoices[invoice_id]

    def update_link(
        self, target: LinkTarget, *, idempotency_key: str | None = None, for_email: bool = False
    ) -> UpdateLink:
        if self.fail_with:
            raise self.fail_with
        with self._lock:
            n = next(self._ids)
            self.sessions.append(
                {"customer": target.customer_id, "idempotency_key": idempotency_key, "for_email": for_email}
            )
        return UpdateLink(url=f"https://billing.stripe.test/p/session/bps_{n}", reference=f"bps_{n}")

    def list_unpaid_invoices(self, *, customer_id: str | None = None) -> Iterator[InvoiceView]:
        for invoice in list(self.invoices.values()):
            if invoice.status == "open" and customer_id in (None, invoice.customer_id):
                yield invoice


class RecordingMessenger:
    """Records messages; honours idempotency keys like a real provider."""

    name = "recording"

    def __init__(self):
        self.messages: list[Message] = []
        self.alerts: list[dict] = []
        self.keys: set[str] = set()
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    def send(self, message: Message, idempotency_key: str) -> SendResult:
        if self.fail_with:
            raise self.fail_with
        with self._lock:
            if idempotency_key in self.keys:
                return SendResult(self.name, idempotency_key, duplicate=True)
            self.keys.add(idempotency_key)
            self.messages.append(message)
        return SendResult(self.name, idempotency_key)

    def send_alert(self, email: str, subject: str, text: str, idempotency_key: str) -> SendResult:
        with self._lock:
            if idempotency_key in self.keys:
                return SendResult(self.name, idempotency_key, duplicate=True)
            self.keys.add(idempotency_key)
            self.alerts.append({"email": email, "subject": subject, "text": text})
        return SendResult(self.name, idempotency_key)

    def check(self) -> str:
        return "recording"


class FakeRecurlyReads:
    """What Recurly translation reads (`translate.RecurlyReads`): invoices by number in a dict; `collect`
    pays the invoice or declines it (a RecurlyRefused of type "transaction"), as Recurly answers."""

    def __init__(self, livemode: bool = False):
        self.invoices: dict[str, dict] = {}
        self.live = livemode
        self.card_works = True
        self.refuse: Exception | None = None  # what `collect` raises instead of charging
        self.collected: list[str] = []
        self.calls: list[str] = []

    def put(self, obj: dict) -> dict:
        self.invoices[obj["number"]] = obj
        return obj

    def invoice(self, number: str) -> dict:
        self.calls.append(f"invoice {number}")
        if number not in self.invoices:
            from webhook_app.errors import ResourceMissing

            raise ResourceMissing(f"Recurly has no such invoice (404): number-{number}", kind="invoice")
        return self.invoices[number]

    def livemode(self) -> bool:
        return self.live

    def past_due_invoices(self, account_code: str) -> list[dict]:
        self.calls.append(f"past due of {account_code}")
        return [i for i in self.invoices.values() if i["state"] == "past_due" and i["account"]["code"] == account_code]

    def collect(self, number: str) -> dict:
        from tests.fixtures import recurly_objects as ro
        from webhook_app.providers.recurly.client import RecurlyRefused

        self.collected.append(number)
        if self.refuse is not None:
            raise self.refuse
        obj = self.invoices[number]
        if obj["state"] != "past_due":
            raise RecurlyRefused("Recurly refused the collection with HTTP 422", 422, "validation")
        if not self.card_works:
            declined = ro.transaction(success=False, amount=obj["balance"], currency=obj["currency"])
            self.invoices[number] = {**obj, "transactions": [*obj["transactions"], declined]}
            raise RecurlyRefused("Recurly refused the collection with HTTP 422", 422, "transaction")
        self.invoices[number] = ro.paid(obj)
        return self.invoices[number]

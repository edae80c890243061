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

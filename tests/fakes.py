"""Test fakes of our own protocols (Billing, Messenger): used by unit tests, never SDK patching."""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace

from webhook_app.adapters import Message, PortalSession, SendResult
from webhook_app.invoices import InvoiceView


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
    """Keeps invoices in a dict; mints numbered portal sessions; can be told to fail."""

    def __init__(self):
        self.invoices: dict[str, InvoiceView] = {}
        self.sessions: list[dict] = []
        self.fail_with: Exception | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def put(self, obj: dict) -> InvoiceView:
        view = InvoiceView.from_stripe(obj)
        self.invoices[view.id] = view
        return view

    def set_status(self, invoice_id: str, status: str, **changes) -> None:
        self.invoices[invoice_id] = replace(self.invoices[invoice_id], status=status, **changes)

    def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        if self.fail_with:
            raise self.fail_with
        return self.invoices[invoice_id]

    def create_portal_session(self, customer_id, *, idempotency_key=None, after_expiration_login=False):
        if self.fail_with:
            raise self.fail_with
        with self._lock:
            n = next(self._ids)
            self.sessions.append(
                {
                    "customer": customer_id,
                    "idempotency_key": idempotency_key,
                    "after_expiration_login": after_expiration_login,
                }
            )
        return PortalSession(id=f"bps_{n}", url=f"https://billing.stripe.test/p/session/bps_{n}")


class RecordingMessenger:
    """Records messages; honours idempotency keys like a real provider."""

    name = "recording"

    def __init__(self):
        self.messages: list[Message] = []
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

    def check(self) -> str:
        return "recording"

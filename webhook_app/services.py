"""The wiring: settings, database, clock and adapters, built once by `create_app` (or the CLI)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from webhook_app.adapters import Billing, Messenger
from webhook_app.config import Settings
from webhook_app.db import Database


@dataclass
class Services:
    """Everything business code depends on; tests swap any piece through `create_app` keywords."""

    settings: Settings
    db: Database
    clock: Any
    billing: Billing | None
    messenger: Messenger
    wake: threading.Event = field(default_factory=threading.Event)

    def wake_worker(self) -> None:
        """Tell an embedded worker there is new work (it polls anyway)."""
        self.wake.set()


def build_messenger(settings: Settings) -> Messenger:
    """The configured email tool."""
    if settings.messaging_provider == "loops":
        from webhook_app.adapters.loops import LoopsMessenger

        return LoopsMessenger(settings)
    if settings.messaging_provider == "intercom":
        from webhook_app.adapters.intercom import IntercomMessenger

        return IntercomMessenger(settings)
    from webhook_app.adapters.console import ConsoleMessenger

    return ConsoleMessenger()


def build_billing(settings: Settings) -> Billing | None:
    """The Stripe adapter, or None until STRIPE_SECRET_KEY is set."""
    if not settings.stripe_secret_key:
        return None
    from webhook_app.adapters.stripe_billing import StripeBilling

    return StripeBilling(settings)


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    return current_app.extensions["webhook_app"]

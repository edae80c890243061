"""The wiring: settings, database, clock, billing providers and the email tool, built once by `create_app`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

from flask import current_app

from webhook_app.adapters import Messenger, SendResult
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.alerts import Alert, Alerter, render_text
from webhook_app.config import Settings
from webhook_app.db import Database
from webhook_app.errors import ConfigurationNeeded
from webhook_app.providers.base import Billing, Provider


@dataclass
class Services:
    """Everything business code depends on; tests swap any piece through `create_app` keywords."""

    settings: Settings
    db: Database
    clock: Any
    providers: dict[str, Provider]
    messenger: Messenger
    alerters: dict[str, Alerter] = field(default_factory=dict)  # team alert channels: slack, email
    wake: threading.Event = field(default_factory=threading.Event)
    arrivals: int = 0  # deliveries stored by this process (see `webhook_app.embedded`)
    _deployment_id: str | None = field(default=None, repr=False)

    def deployment_id(self) -> str:
        """This deployment's id (made once per database, read once per process): see `webhook_app.deployment`."""
        if self._deployment_id is None:
            from webhook_app.deployment import deployment_id

            self._deployment_id = deployment_id(self.db, self.clock.now())
        return self._deployment_id

    def wake_worker(self) -> None:
        """Tell an embedded worker there is new work (it polls anyway), and count the arrival."""
        self.arrivals += 1  # approximate under threads, which is all the embedded worker's gate needs
        self.wake.set()

    def provider(self, name: str) -> Provider:
        """The named billing provider (every stored row names one the registry knows)."""
        return self.providers[name]

    def billing(self, name: str) -> Billing:
        """The named provider's runtime port; ConfigurationNeeded (messages are held) until it is set up."""
        provider = self.providers.get(name)
        port = provider.billing if provider is not None else None
        if port is None:
            missing = provider.missing_for_sending() if provider is not None else [name]
            raise ConfigurationNeeded(f"{', '.join(missing)} is not set; {name} messages wait until it is")
        return port

    def enabled_providers(self) -> list[Provider]:
        """The providers whose credentials are set."""
        return [p for p in self.providers.values() if p.enabled]


def build_messenger(settings: Settings) -> Messenger:
    """The configured email tool."""
    if settings.messaging_provider == "loops":
        from webhook_app.adapters.loops import LoopsMessenger

        return LoopsMessenger(settings.loops)
    if settings.messaging_provider == "intercom":
        from webhook_app.adapters.intercom import IntercomMessenger

        return IntercomMessenger(settings.intercom)
    from webhook_app.adapters.console import ConsoleMessenger

    return ConsoleMessenger()


class EmailAlerter:
    """Team alerts by email (ALERT_EMAIL), through the configured messenger."""

    name = "email"

    def __init__(self, messenger: Messenger, email: str):
        self.messenger = messenger
        self.email = email

    def send(self, alert: Alert, idempotency_key: str) -> SendResult:
        """Email the alert's text; the messenger's idempotency key makes a retry a no-op where it can."""
        subject = render_text(alert).splitlines()[0][:150]
        return self.messenger.send_alert(self.email, subject, render_text(alert), idempotency_key)

    def check(self) -> str:
        return f"alerts by email through {self.messenger.name}"


def build_alerters(settings: Settings, messenger: Messenger) -> dict[str, Alerter]:
    """The configured team alert channels, by channel name."""
    from webhook_app.adapters.slack import SlackAlerter

    alerters: dict[str, Alerter] = {}
    if settings.alerts.slack_webhook_url:
        alerters["slack"] = SlackAlerter(settings.alerts.slack_webhook_url, timeout=settings.loops.timeout_seconds)
    if settings.alerts.email:
        alerters["email"] = EmailAlerter(messenger, settings.alerts.email)
    return alerters


def _credential(settings: Settings, messenger_name: str) -> str | None:
    """The credential that names an email tool's limit (its API key or token)."""
    if messenger_name == "loops":
        return settings.loops.api_key
    if messenger_name == "intercom":
        return settings.intercom.access_token
    return None


def share_rate_limits(svc: Services, *, messenger: bool = True, stripe_api: bool = True) -> None:
    """Make the adapters' own limiters pace through the database, together with every other process.

    Each adapter keeps owning its limiter; this only gives it shared state (`webhook_app.rate_slots`),
    one row per provider and credential: Stripe's (`stripe_api`), and the email tool's (`messenger`:
    Loops, Intercom). Adapters a test passed in keep their own limiter as it was built.
    """
    from webhook_app.rate_slots import SharedSlots, limit_key

    bucket = getattr(svc.messenger, "bucket", None)
    credential = _credential(svc.settings, svc.messenger.name)
    if messenger and isinstance(bucket, TokenBucket) and credential:
        bucket.share(SharedSlots(svc.db, limit_key(svc.messenger.name, credential)))
    if not stripe_api:
        return
    stripe = svc.providers.get("stripe")
    api = getattr(stripe.billing if stripe is not None else None, "api", None)
    pacer = getattr(api, "pacer", None)
    if pacer is not None and isinstance(pacer.bucket, TokenBucket) and svc.settings.stripe.secret_key:
        pacer.bucket.share(SharedSlots(svc.db, limit_key("stripe", svc.settings.stripe.secret_key)))


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    return cast(Services, current_app.extensions["webhook_app"])

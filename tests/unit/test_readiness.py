"""Production start-up names every missing or malformed essential; development starts and says so.

The checks run over the `Provider` port (`enabled`, `missing_for_intake`, `missing_for_sending`), never
per provider name: a provider added later is covered without a line in `readiness.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from webhook_app import create_app
from webhook_app.config import load_settings
from webhook_app.readiness import StartupRefused, configuration_problems, refuse_to_start
from webhook_app.services import services

COMPLETE = {
    "APP_ENV": "production",
    "DATABASE_URL": "sqlite:////nonexistent/never-opened.sqlite3",  # start-up never opens the database
    "STRIPE_SECRET_KEY": STRIPE_KEY,
    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "SECRET_KEY": "a-long-random-production-secret",
    "PUBLIC_URL": "https://recover.example.com",
    "MESSAGING_PROVIDER": "loops",
    "LOOPS_API_KEY": "loops_live_key_0123456789",
}


def refusal(config: dict[str, str], process: str = "web") -> StartupRefused | None:
    app = create_app(config)
    with app.app_context():
        try:
            refuse_to_start(services(), process)
        except StartupRefused as exc:
            return exc
    return None


def test_production_with_every_essential_starts():
    assert refusal(COMPLETE) is None


@pytest.mark.parametrize("process", ["web", "worker"])
def test_production_refuses_naming_every_missing_essential_at_once(process):
    config = {"APP_ENV": "production", "STRIPE_SECRET_KEY": STRIPE_KEY, "MESSAGING_PROVIDER": "loops"}
    exc = refusal(config, process)
    assert exc is not None and exc.process == process
    message = str(exc)
    for name in ("STRIPE_WEBHOOK_SECRET", "SECRET_KEY", "PUBLIC_URL", "LOOPS_API_KEY"):
        assert name in message, name
    assert [p.subject for p in exc.problems] == ["STRIPE_WEBHOOK_SECRET", "LOOPS_API_KEY", "SECRET_KEY", "PUBLIC_URL"]
    assert "webhook-app doctor" in message


def test_production_names_a_malformed_value_without_showing_it():
    exc = refusal({**COMPLETE, "STRIPE_SECRET_KEY": "pk_live_publishable_oops", "WORKER_CONCURRENCY": "lots"})
    assert exc is not None
    text = str(exc)
    assert "STRIPE_SECRET_KEY must start with sk_ or rk_: Stripe events cannot be acted on" in text
    assert "WORKER_CONCURRENCY must be a int" in text
    assert "pk_live_publishable_oops" not in text and "lots" not in text


def test_production_refuses_the_console_messenger_and_a_missing_provider():
    exc = refusal({k: v for k, v in COMPLETE.items() if not k.startswith(("STRIPE_", "MESSAGING_", "LOOPS_"))})
    assert exc is not None
    assert [p.subject for p in exc.problems] == ["billing provider", "MESSAGING_PROVIDER"]


def test_development_starts_with_problems_and_returns_them():
    app = create_app({"STRIPE_SECRET_KEY": STRIPE_KEY})
    with app.app_context():
        found = refuse_to_start(services(), "web")
    assert [p.subject for p in found] == ["STRIPE_WEBHOOK_SECRET"]
    assert found[0].message == "STRIPE_WEBHOOK_SECRET is not set: Stripe deliveries are refused (503)"


@dataclass
class AcmeProvider:
    """Another billing provider through the port: the checks must see it without knowing its name."""

    name: str = "acme"
    label: str = "Acme Billing"
    handled_event_types: tuple[str, ...] = ()
    enabled: bool = True
    intake: list[str] = field(default_factory=lambda: ["ACME_WEBHOOK_SECRET"])
    sending: list[str] = field(default_factory=lambda: ["ACME_API_KEY"])

    def missing_for_intake(self) -> list[str]:
        return self.intake

    def missing_for_sending(self) -> list[str]:
        return self.sending


def test_checks_are_generic_over_enabled_providers():
    settings = load_settings({**COMPLETE, "STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": ""})
    problems = configuration_problems(settings, [AcmeProvider(), AcmeProvider(name="off", enabled=False)])
    assert [p.subject for p in problems] == ["ACME_WEBHOOK_SECRET", "ACME_API_KEY"]
    assert problems[0].message == "ACME_WEBHOOK_SECRET is not set: Acme Billing deliveries are refused (503)"
    assert problems[1].message == "ACME_API_KEY is not set: Acme Billing events cannot be acted on"


def test_a_variable_two_providers_need_is_named_once():
    settings = load_settings(COMPLETE)
    shared = [AcmeProvider(intake=["SHARED_SECRET"], sending=[]), AcmeProvider(intake=["SHARED_SECRET"], sending=[])]
    assert [p.subject for p in configuration_problems(settings, shared)] == ["SHARED_SECRET"]

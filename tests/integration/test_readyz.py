"""`/readyz`: 503 naming every problem while webhooks cannot be accepted or acted on, in every mode
(development included); 200 only when they can. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import base_config
from webhook_app import create_app, migrate


def ready(app) -> tuple[int, dict]:
    response = app.test_client().get("/readyz")
    return response.status_code, response.json


def test_ready_when_everything_is_in_place(app):
    status, body = ready(app)
    assert (status, body["status"], body["problems"]) == (200, "ready", [])


def test_a_missing_webhook_secret_is_named_in_development(make_app):
    status, body = ready(make_app(STRIPE_WEBHOOK_SECRET=""))
    assert status == 503 and body["status"] == "unavailable"
    assert body["problems"] == ["STRIPE_WEBHOOK_SECRET is not set: Stripe deliveries are refused (503)"]


@pytest.fixture
def unfaked_app(database_url, clock):
    """Build apps whose providers come from the settings alone (no fake port standing in for a key)."""
    apps = []

    def _make(**overrides):
        app = create_app(base_config(database_url, **overrides), clock=clock)
        with app.app_context():
            migrate.upgrade(app.extensions["webhook_app"].db)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["webhook_app"].db.dispose()


def test_a_missing_api_key_is_named(unfaked_app):
    # Without a key the worker cannot re-read invoices or mint links: nothing is acted on.
    app = unfaked_app(STRIPE_SECRET_KEY="")
    status, body = ready(app)
    assert status == 503 and body["problems"] == ["STRIPE_SECRET_KEY is not set: Stripe events cannot be acted on"]


def test_the_email_tools_credentials_are_needed(make_app):
    status, body = ready(make_app(MESSAGING_PROVIDER="loops", LOOPS_API_KEY=""))
    assert status == 503
    assert body["problems"] == ["LOOPS_API_KEY is not set: no message can be sent through loops (they wait, held)"]
    assert body["fixes"] == ["set LOOPS_API_KEY"]


def test_no_billing_provider_is_named(unfaked_app):
    app = unfaked_app(STRIPE_WEBHOOK_SECRET="", STRIPE_SECRET_KEY="")
    status, body = ready(app)
    assert status == 503
    assert body["problems"] == [
        "no billing provider is set up (Stripe, Chargebee, Recurly, Paddle, Braintree): every webhook is refused"
    ]


def test_an_unmigrated_database_and_a_config_problem_are_both_named(database_url, clock):
    app = create_app({"DATABASE_URL": database_url, "STRIPE_SECRET_KEY": "sk_test_abcdef123456"}, clock=clock)
    status, body = ready(app)
    assert status == 503
    assert body["problems"][0].startswith("STRIPE_WEBHOOK_SECRET is not set")
    assert body["database"] == body["problems"][1]
    assert "is not migrated" in body["database"] or "no database at" in body["database"]
    assert "run `webhook-app db upgrade`" in body["fixes"][1]
    app.extensions["webhook_app"].db.dispose()


def test_readyz_never_creates_a_sqlite_database(tmp_path):
    path = tmp_path / "absent.sqlite3"
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "STRIPE_WEBHOOK_SECRET": "whsec_abcdef123456"})
    status, body = ready(app)
    app.extensions["webhook_app"].db.dispose()
    assert status == 503 and body["database"] == f"no database at {path}"
    assert not path.exists()

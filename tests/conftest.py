"""Shared fixtures: real SQLite and real PostgreSQL databases, the app, signed deliveries."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from tests.fakes import FakeBilling, RecordingMessenger
from tests.fixtures import stripe_objects
from webhook_app import create_app
from webhook_app.clock import FrozenClock, utcnow
from webhook_app.config import normalize_database_url
from webhook_app.services import services

WEBHOOK_SECRET = "whsec_test_primary_0123456789"
OLD_WEBHOOK_SECRET = "whsec_test_rotated_9876543210"
STRIPE_KEY = "sk_test_51FakeKeyForTests0000"
PG_URL = os.environ.get("TEST_DATABASE_URL")
# Settings a developer may have exported; tests that start processes must not inherit them.
ROOT_ENV_KEYS = (
    "DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "MESSAGING_PROVIDER",
    "SENTRY_DSN",
    "WORKER_MODE",
    "PUBLIC_URL",
    "SECRET_KEY",
    "APP_ENV",
    "RECURLY_API_KEY",
    "RECURLY_WEBHOOK_SECRET",
    "RECURLY_SUBDOMAIN",
    "RECURLY_API_BASE",
    "RECURLY_COLLECT_ON_UPDATE",
    "DUNNING_GROUP_WINDOW_SECONDS",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
)
NO_PG_REASON = "PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow scenario: run with `make test-reliability` (--run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def postgres_schema_url(base_url: str, schema: str) -> str:
    """A URL whose connections use their own schema, so tests never see each other's rows."""
    url = normalize_database_url(base_url)
    sep = "&" if "?" in url else "?"
    # application_name marks the schema's connections, so teardown can end them before dropping it.
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}&application_name={schema}"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def postgres_url():
    """A fresh, empty schema on the test PostgreSQL server; dropped afterwards."""
    if not PG_URL:
        pytest.skip(NO_PG_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    # pool_pre_ping: the teardown still works after a test restarted the server.
    admin = create_engine(normalize_database_url(PG_URL), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_schema_url(PG_URL, schema)
    finally:
        with admin.connect() as conn:
            # A server the test started (gunicorn, a worker) may still hold connections, even a lock,
            # when this teardown runs first: end them, or DROP SCHEMA waits on them.
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": schema},
            )
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request):
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def base_config(database_url: str, **overrides) -> dict:
    config = {
        "DATABASE_URL": database_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "SECRET_KEY": "test-secret-key-for-links",
        "PUBLIC_URL": "https://recover.example.test",
        "PORTAL_RETURN_URL": "https://app.example.test/billing",
        "WORKER_MODE": "external",
        "WORKER_RETRY_BASE_SECONDS": "0",
        "COMPANY_NAME": "Acme Cloud",
        # Most tests look at what one failure sends; the group window has its own tests.
        "DUNNING_GROUP_WINDOW_SECONDS": "0",
    }
    config.update({k: str(v) for k, v in overrides.items()})
    return config


@pytest.fixture
def clock():
    """A frozen clock on a whole second, as Stripe's timestamps are."""
    return FrozenClock(utcnow().replace(microsecond=0))


@pytest.fixture
def billing():
    return FakeBilling()


@pytest.fixture
def messenger():
    return RecordingMessenger()


@pytest.fixture
def make_app(database_url, clock, billing, messenger):
    """Build a migrated app on the parametrized database with fakes of our own protocols."""
    from webhook_app import migrate

    apps = []

    def _make(**overrides):
        app = create_app(base_config(database_url, **overrides), billing=billing, messenger=messenger, clock=clock)
        with app.app_context():
            migrate.upgrade(services().db)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["webhook_app"].db.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def svc(app):
    with app.app_context():
        yield services()


@pytest.fixture
def deliver(app):
    """POST a signed event to the webhook; returns the response."""
    client = app.test_client()

    def _deliver(event: dict, secret: str = WEBHOOK_SECRET, **kwargs):
        body, headers = stripe_objects.signed(event, secret, **kwargs)
        return client.post("/webhooks/stripe", data=body, headers=headers)

    return _deliver

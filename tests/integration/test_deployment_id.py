"""Idempotency keys unique per deployment: an id made once per database, read once per process.

Staging and production sharing one Loops team (Loops refuses a key it saw in the last 24 hours) both
deliver their first message, although both databases number that message 1.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text

from tests.conftest import PG_URL, base_config, postgres_schema_url
from tests.fakes import FakeBilling
from tests.fixtures import stripe_objects as so
from tests.standins import serve
from tests.standins.loops import LoopsStandIn
from webhook_app import create_app, migrate
from webhook_app.config import normalize_database_url
from webhook_app.deployment import deployment_id
from webhook_app.models import Deployment
from webhook_app.sending import idempotency_key
from webhook_app.services import services
from webhook_app.worker import Worker


def test_the_id_is_made_once_and_every_process_reads_the_same(make_app, clock):
    first, second = make_app(), make_app()  # two processes' worth of services on one database
    with first.app_context():
        a = services().deployment_id()
        assert services().deployment_id() == a  # cached: read once per process
    with second.app_context():
        assert services().deployment_id() == a
        with services().db.session() as s:
            assert s.scalar(select(func.count()).select_from(Deployment)) == 1


def test_racing_processes_agree_on_one_id(svc, clock):
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(deployment_id(svc.db, clock.now()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Deployment)) == 1


def test_the_key_names_the_deployment_and_the_notification_and_fits_loops():
    key = idempotency_key("0123456789abcdef", 12)
    assert key == "webhook-app-0123456789abcdef-notification-12"
    assert len(idempotency_key("0123456789abcdef", 2**63 - 1) + "-portal") <= 100  # Loops' limit


@pytest.fixture
def loops():
    standin = LoopsStandIn()
    served = serve(standin.app)
    standin.url = served.url
    yield standin
    served.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_databases(request, tmp_path):
    """Two deployments' databases: two SQLite files, or two PostgreSQL schemas."""
    if request.param == "sqlite":
        yield [f"sqlite:///{tmp_path / 'staging.sqlite3'}", f"sqlite:///{tmp_path / 'production.sqlite3'}"]
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    admin = create_engine(normalize_database_url(PG_URL), isolation_level="AUTOCOMMIT")
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with admin.connect() as conn:
        for schema in schemas:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield [postgres_schema_url(PG_URL, schema) for schema in schemas]
    finally:
        with admin.connect() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_two_deployments_sharing_one_loops_team_both_deliver_their_first_message(two_databases, loops, clock):
    delivered = []
    for database_url in two_databases:
        billing = FakeBilling()
        config = base_config(
            database_url,
            MESSAGING_PROVIDER="loops",
            LOOPS_API_KEY=loops.api_key,
            LOOPS_API_BASE=f"{loops.url}/api",
            LOOPS_TRANSACTIONAL_ID="tx_recovery",
        )
        app = create_app(config, billing=billing, clock=clock)  # the real Loops adapter, over HTTP
        with app.app_context():
            svc = services()
            migrate.upgrade(svc.db)
            inv = so.invoice(invoice_id="in_same_everywhere")
            billing.put(inv)
            body, headers = so.signed(so.event("invoice.payment_failed", inv), config["STRIPE_WEBHOOK_SECRET"])
            assert app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code == 200
            Worker(svc).run_once()
            delivered.append(svc.deployment_id())
            svc.db.dispose()

    assert len(set(delivered)) == 2  # each database made its own id
    assert loops.conflicts == 0
    assert len(loops.messages) == 2
    assert {m["key"] for m in loops.messages} == {
        idempotency_key(delivered[0], 1),
        idempotency_key(delivered[1], 1),
    }

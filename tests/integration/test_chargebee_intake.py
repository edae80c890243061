"""`POST /webhooks/chargebee` on real SQLite and PostgreSQL: basic auth, stored once, nothing on refusal;
and the worker holding Chargebee events it cannot confirm until the API key is set."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.standins.chargebee import ChargebeeStandIn
from webhook_app.models import Event
from webhook_app.worker import Worker

USERNAME, PASSWORD = "cb-hooks", "a-long-random-webhook-password"
CHARGEBEE = {
    "CHARGEBEE_SITE": "acme-test",
    "CHARGEBEE_API_KEY": "test_cbKey0123456789abcdef",
    "CHARGEBEE_WEBHOOK_USERNAME": USERNAME,
    "CHARGEBEE_WEBHOOK_PASSWORD": PASSWORD,
}


def auth(username: str = USERNAME, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def cb() -> ChargebeeStandIn:
    standin = ChargebeeStandIn()
    standin.add_customer("cust_ada")
    standin.add_invoice("inv_1", customer_id="cust_ada")
    return standin


def events(app) -> list[Event]:
    svc = app.extensions["webhook_app"]
    with svc.db.session() as s:
        return s.scalars(select(Event)).all()


def post(app, body: bytes, headers: dict[str, str]):
    return app.test_client().post(
        "/webhooks/chargebee", data=body, headers={"Content-Type": "application/json", **headers}
    )


def test_a_delivery_with_the_endpoints_credentials_is_stored_once(make_app, cb):
    app = make_app(**CHARGEBEE)
    body = cb.webhook_body(cb.add_invoice_event("payment_failed", "inv_1"))

    first, second = post(app, body, auth()), post(app, body, auth())

    assert (first.status_code, first.json) == (200, {"received": True, "duplicate": False})
    assert (second.status_code, second.json["duplicate"]) == (200, True)  # Chargebee's retry of the same id
    [row] = events(app)
    assert (row.provider, row.type, row.status, row.livemode) == ("chargebee", "payment_failed", "pending", False)


@pytest.mark.parametrize(
    "headers",
    [{}, auth(password="guess"), auth(username="admin"), {"Authorization": "Bearer " + PASSWORD}],
    ids=["none", "wrong password", "wrong username", "not basic"],
)
def test_bad_credentials_get_401_and_nothing_is_stored(make_app, cb, headers):
    app = make_app(**CHARGEBEE)
    response = post(app, cb.webhook_body(cb.add_invoice_event("payment_failed", "inv_1")), headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="webhooks/chargebee"'
    assert PASSWORD not in response.get_data(as_text=True)
    assert events(app) == []


def test_without_configured_credentials_every_delivery_is_refused_naming_them(make_app, cb):
    app = make_app(CHARGEBEE_SITE="acme-test", CHARGEBEE_API_KEY="test_cbKey0123456789abcdef")
    response = post(app, cb.webhook_body(cb.add_invoice_event("payment_failed", "inv_1")), auth())
    assert response.status_code == 503
    assert response.json["missing"] == ["CHARGEBEE_WEBHOOK_USERNAME", "CHARGEBEE_WEBHOOK_PASSWORD"]
    assert events(app) == []


def test_a_malformed_envelope_with_good_credentials_is_400_and_not_stored(make_app):
    app = make_app(**CHARGEBEE)
    response = post(app, b'{"id": "ev_1", "event_type": "payment_failed"}', auth())
    assert response.status_code == 400 and "occurred_at" in response.json["message"]
    assert events(app) == []


def test_events_wait_held_for_the_api_key_instead_of_failing(make_app, cb, clock):
    app = make_app(**{**CHARGEBEE, "CHARGEBEE_API_KEY": ""})
    assert post(app, cb.webhook_body(cb.add_invoice_event("payment_failed", "inv_1")), auth()).status_code == 200

    Worker(app.extensions["webhook_app"]).run_once()

    [row] = events(app)
    assert row.status == "pending"  # not failed: it is processed once the key is set
    assert row.run_at == clock.now() + timedelta(hours=1)
    assert "CHARGEBEE_API_KEY" in row.last_error
    svc = app.extensions["webhook_app"]
    with svc.db.session() as s:
        assert s.scalar(select(func.count(Event.id)).where(Event.status == "failed")) == 0

"""Intake on real SQLite and PostgreSQL: verified, stored once, never 200 without a stored row."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import func, select

from tests.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET
from tests.fixtures import stripe_objects as so
from webhook_app.models import Event


def count_events(svc) -> int:
    with svc.db.session() as s:
        return s.scalar(select(func.count(Event.id)))


def failed_event():
    return so.event("invoice.payment_failed", so.invoice())


def test_signed_event_is_stored_once_and_answered_200(svc, deliver):
    event = failed_event()
    response = deliver(event)
    assert response.status_code == 200
    assert response.json == {"received": True, "duplicate": False}
    with svc.db.session() as s:
        row = s.scalars(select(Event)).one()
    assert (row.event_id, row.type, row.status) == (event["id"], "invoice.payment_failed", "pending")
    assert json.loads(row.payload) == event


def test_duplicate_delivery_answers_200_and_stores_nothing_new(svc, deliver):
    event = failed_event()
    assert deliver(event).json["duplicate"] is False
    second = deliver(event)
    assert second.status_code == 200 and second.json["duplicate"] is True
    assert count_events(svc) == 1


def test_three_concurrent_deliveries_store_one_row(app, svc):
    event = failed_event()
    body, headers = so.signed(event, WEBHOOK_SECRET)
    statuses = []

    def post():
        statuses.append(app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200, 200]
    assert count_events(svc) == 1


def test_rotated_secret_in_the_list_verifies(make_app):
    app = make_app(STRIPE_WEBHOOK_SECRET=f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}")
    body, headers = so.signed(failed_event(), OLD_WEBHOOK_SECRET)
    assert app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        "wrong_secret",
        "missing_header",
        "stale",
        "future",
        "bad_json",
        "not_object",
        "missing_id",
        "body_changed_after_signing",
        "non_utf8",
    ],
)
def test_bad_deliveries_get_400_with_a_reason_and_store_nothing(app, svc, case):
    event = failed_event()
    client = app.test_client()
    if case == "wrong_secret":
        body, headers = so.signed(event, "whsec_someone_else_entirely")
    elif case == "missing_header":
        body, headers = so.signed(event, WEBHOOK_SECRET)
        headers.pop("Stripe-Signature")
    elif case == "stale":
        body, headers = so.signed(event, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    elif case == "future":
        body, headers = so.signed(event, WEBHOOK_SECRET, timestamp=int(time.time()) + 3600)
    elif case == "bad_json":
        body, headers = so.signed('{"id": "evt_1", "type": ', WEBHOOK_SECRET)
    elif case == "not_object":
        body, headers = so.signed("[1, 2, 3]", WEBHOOK_SECRET)
    elif case == "missing_id":
        event.pop("id")
        body, headers = so.signed(event, WEBHOOK_SECRET)
    elif case == "body_changed_after_signing":
        body, headers = so.signed(event, WEBHOOK_SECRET)
        body = body.replace(b"4900", b"1")
    else:
        body = b'{"id": "evt_\xff\xfe"}'
        headers = so.signed(body.decode("latin-1"), WEBHOOK_SECRET)[1]
    response = client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_delivery" and response.json["message"]
    assert count_events(svc) == 0


def test_oversized_body_gets_413_and_stores_nothing(make_app, caplog):
    app = make_app(WEBHOOK_MAX_BODY_BYTES=2048)
    event = so.event("invoice.payment_failed", so.invoice(description="x" * 5000))
    body, headers = so.signed(event, WEBHOOK_SECRET)
    with caplog.at_level(logging.WARNING, logger="webhook_app.intake"):
        response = app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 413 and response.json["error"] == "payload_too_large"
    [refusal] = [r.getMessage() for r in caplog.records if "413" in r.getMessage()]
    assert refusal == f"Stripe webhook refused (413): body of {len(body)} bytes exceeds WEBHOOK_MAX_BODY_BYTES (2048)"
    with app.app_context():
        from webhook_app.services import services

        assert count_events(services()) == 0


def test_a_chunked_oversized_body_is_refused_and_logged(make_app, caplog):
    app = make_app(WEBHOOK_MAX_BODY_BYTES=2048)
    body, headers = so.signed(so.event("invoice.payment_failed", so.invoice(description="x" * 5000)), WEBHOOK_SECRET)

    # No Content-Length: only MAX_CONTENT_LENGTH, while reading, can stop it. gunicorn marks a chunked
    # body's stream as terminated (wsgi.input_terminated), as here.
    chunked = {**headers, "Transfer-Encoding": "chunked"}
    with caplog.at_level(logging.WARNING, logger="webhook_app.intake"):
        response = app.test_client().post(
            "/webhooks/stripe",
            input_stream=io.BytesIO(body),
            headers=chunked,
            environ_overrides={"wsgi.input_terminated": True},
        )
    assert response.status_code == 413
    assert any("webhook refused (413)" in r.getMessage() for r in caplog.records)


def test_livemode_mismatch_is_stored_as_ignored_and_answered_200(svc, deliver):
    event = so.event("invoice.payment_failed", so.invoice(livemode=True), livemode=True)
    assert deliver(event).status_code == 200
    with svc.db.session() as s:
        row = s.scalars(select(Event)).one()
    assert row.status == "ignored" and "livemode" in row.last_error


def test_missing_webhook_secret_answers_503_naming_the_variable(make_app):
    app = make_app(STRIPE_WEBHOOK_SECRET="")
    body, headers = so.signed(failed_event(), WEBHOOK_SECRET)
    response = app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 503
    assert response.json["missing"] == ["STRIPE_WEBHOOK_SECRET"]
    assert app.test_client().get("/healthz").status_code == 200


def test_database_down_answers_503_never_200(svc, deliver):
    from sqlalchemy import text

    with svc.db.engine.begin() as conn:
        conn.execute(text("DROP TABLE events"))  # the inbox is gone: the write must fail loudly
    response = deliver(failed_event())
    assert response.status_code == 503
    assert response.json["error"] == "storage_unavailable"


def test_readyz_needs_a_migrated_database(make_app, svc, app):
    assert app.test_client().get("/readyz").status_code == 200
    from sqlalchemy import text

    with svc.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and "is not migrated" in response.json["database"]
    assert "run `webhook-app db upgrade`" in response.json["fixes"]


def test_the_direct_insert_stores_the_row_the_orm_reads_back(svc, deliver, clock):
    # The inbox writes through the DB-API connection (inbox.store): every column must read back
    # through the ORM exactly as written, datetimes and booleans included.
    event = so.event("invoice.payment_failed", so.invoice(livemode=False), event_id="evt_direct_1")
    event["created"] = 1_700_000_000
    assert deliver(event).status_code == 200
    with svc.db.session() as s:
        row = s.scalars(select(Event)).one()
    assert (row.provider, row.event_id, row.type, row.livemode) == ("stripe", "evt_direct_1", event["type"], False)
    assert (row.status, row.attempts, row.last_error, row.claim_token) == ("pending", 0, None, None)
    assert row.received_at == row.run_at == clock.now().replace(tzinfo=None)
    assert row.occurred_at.replace(tzinfo=None) == datetime(2023, 11, 14, 22, 13, 20)  # 1_700_000_000 in UTC
    assert json.loads(row.payload)["id"] == "evt_direct_1"


def test_webhook_paths_are_answered_in_front_of_flask_and_the_rest_goes_on_to_it(app, svc):
    client = app.test_client()
    body, headers = so.signed(failed_event(), WEBHOOK_SECRET)
    stored = client.post("/webhooks/stripe", data=body, headers=headers)
    assert stored.status_code == 200 and stored.headers["X-Content-Type-Options"] == "nosniff"
    assert stored.headers["Content-Type"] == "application/json"

    unknown = client.post("/webhooks/nosuch", data=body, headers=headers)
    assert unknown.status_code == 404 and unknown.json["error"] == "unknown_provider"
    assert "nosuch" in unknown.json["message"]

    fetched = client.get("/webhooks/stripe")  # Flask's answer, an HTML page
    assert fetched.status_code == 405 and "POST" in fetched.headers["Allow"]

    assert client.post("/webhooks/stripe/extra", data=body, headers=headers).status_code == 404  # Flask's
    assert client.get("/healthz").status_code == 200
    assert count_events(svc) == 1


def test_a_chunked_body_within_the_limit_is_read_to_its_end_and_stored(make_app):
    app = make_app(WEBHOOK_MAX_BODY_BYTES=4096)
    body, headers = so.signed(failed_event(), WEBHOOK_SECRET)
    assert len(body) < 4096
    response = app.test_client().post(
        "/webhooks/stripe",
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200 and response.json == {"received": True, "duplicate": False}


def test_the_flask_rule_gives_the_same_answer_as_the_front(app, svc):
    # Served without `Intake` in front (Flask's own WSGI callable), a delivery is still stored.
    body, headers = so.signed(failed_event(), WEBHOOK_SECRET)
    with app.test_request_context("/webhooks/stripe", method="POST", data=body, headers=headers):
        response = app.full_dispatch_request()
    assert response.status_code == 200 and response.get_json() == {"received": True, "duplicate": False}
    assert count_events(svc) == 1


def test_an_unexpected_failure_answers_500_in_json_and_is_logged_without_the_body(make_app, caplog):
    app = make_app()
    body, headers = so.signed(failed_event(), WEBHOOK_SECRET)
    # A stream that breaks mid-read: not a rejection, not a storage error.
    broken = io.BytesIO(body)
    broken.read = lambda *_: (_ for _ in ()).throw(OSError("connection reset while reading"))  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="webhook_app.intake"):
        response = app.test_client().post("/webhooks/stripe", input_stream=broken, headers=headers)
    assert response.status_code == 500 and response.json["error"] == "internal_error"
    [record] = [r for r in caplog.records if r.name == "webhook_app.intake"]
    assert record.getMessage() == "webhook intake failed on /webhooks/stripe" and record.exc_info

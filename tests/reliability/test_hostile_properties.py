"""Property-based hostile input (hypothesis): whatever arrives, the webhook never answers 5xx, stores
only validly signed events, and the worker finishes every stored one.

Modest example counts keep this in `make test`; raise them with HYPOTHESIS_MAX_EXAMPLES for a soak.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import WEBHOOK_SECRET, base_config
from tests.fakes import FakeBilling, RecordingMessenger
from tests.fixtures import stripe_objects as so
from tests.fixtures.hostile import INVOICE_FIELDS, signature
from webhook_app import create_app, migrate
from webhook_app.models import Event
from webhook_app.services import services
from webhook_app.worker import Worker

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# JSON values of every type, including what a hand-made payload can smuggle in: NUL, lone surrogates,
# huge integers, NaN and infinities (Python's json reads those), deep nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "evt_", "in_", "cus_", "usd", "jpy", "invoice", "paid", "x" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=300
)


@pytest.fixture
def hostile_app(sqlite_url):
    """The app on SQLite with fakes of our own protocols (nothing here reaches a provider)."""
    app = create_app(base_config(sqlite_url), billing=FakeBilling(), messenger=RecordingMessenger())
    with app.app_context():
        migrate.upgrade(services().db)
    yield app
    app.extensions["webhook_app"].db.dispose()


def count_events(app) -> int:
    with app.app_context(), services().db.session() as s:
        return s.scalar(select(func.count()).select_from(Event))


def stored(app, event_id) -> Event | None:
    with app.app_context(), services().db.session() as s:
        return s.scalar(select(Event).where(Event.event_id == event_id))


def post(app, body: bytes, header: str | None):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return app.test_client().post("/webhooks/stripe", data=body, headers=headers)


@PROPERTY
@given(
    body=st.binary(max_size=4096),
    header=st.one_of(
        st.none(),
        header_text,
        st.builds(
            lambda t, mac: f"t={t},v1={mac}",
            st.integers(),
            st.text(alphabet="0123456789abcdef", min_size=0, max_size=70),
        ),
    ),
)
def test_unsigned_bytes_with_any_signature_header_are_refused_and_store_nothing(hostile_app, body, header):
    before = count_events(hostile_app)
    response = post(hostile_app, body, header)
    assert 400 <= response.status_code < 500
    assert count_events(hostile_app) == before


@PROPERTY
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_changing_any_byte_of_a_signed_body_breaks_its_signature(hostile_app, position, flip):
    event = so.event("invoice.payment_failed", so.invoice(email="flip@example.test"))
    body = json.dumps(event).encode()
    header = signature(body, WEBHOOK_SECRET, int(time.time()))
    i = position % len(body)
    changed = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
    response = post(hostile_app, changed, header)
    assert response.status_code == 400
    assert stored(hostile_app, event["id"]) is None


@PROPERTY
@given(
    overrides=st.dictionaries(
        st.sampled_from(["id", "type", "created", "livemode", "data", "api_version", "object", "request", "account"]),
        json_values,
        max_size=4,
    ),
    whole=st.one_of(st.none(), json_values),
)
def test_validly_signed_json_of_any_shape_never_gets_a_5xx_and_is_stored_only_on_200(hostile_app, overrides, whole):
    event = so.event("invoice.payment_failed", so.invoice(email="shape@example.test"))
    event.update(overrides)
    payload = event if whole is None else whole
    body = json.dumps(payload).encode()
    before = count_events(hostile_app)
    response = post(hostile_app, body, signature(body, WEBHOOK_SECRET, int(time.time())))
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        assert stored(hostile_app, payload["id"]) is not None
    else:
        assert response.status_code in (400, 413)
        assert count_events(hostile_app) == before


@PROPERTY
@given(
    overrides=st.dictionaries(
        st.sampled_from(
            [
                *INVOICE_FIELDS,
                "payment_intent",
                "charge",
                "subscription",
                "paid",
                "paid_out_of_band",
                "last_finalization_error",
                "customer_address",
                "amount_remaining",
            ]
        ),
        json_values,
        max_size=5,
    ),
    event_type=st.sampled_from(
        [
            "invoice.payment_failed",
            "invoice.payment_action_required",
            "invoice.paid",
            "invoice.payment_succeeded",
            "invoice.voided",
            "invoice.marked_uncollectible",
            "customer.subscription.deleted",
        ]
    ),
)
def test_worker_finishes_every_validly_signed_strange_event_and_keeps_the_reason(hostile_app, overrides, event_type):
    invoice = so.invoice(email="strange@example.test")
    invoice.update(overrides)
    event = so.event(event_type, invoice)
    body, headers = so.signed(event, WEBHOOK_SECRET)
    assert hostile_app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    with hostile_app.app_context():
        worker = Worker(services())
        for _ in range(5):  # bounded: one pass claims it, a second finds nothing
            if worker.process_events() == 0:
                break
    row = stored(hostile_app, event["id"])
    assert row.status in ("done", "failed", "ignored"), row.status
    if row.status == "failed":
        assert row.last_error

"""Paddle through the core on SQLite and PostgreSQL: the app (Flask test client, in-process worker) with
the real PaddleClient and runtime port against the Paddle stand-in on a real socket.

Covers what the end-to-end test does not look at closely: the message is held (never sent with a broken
link) until PADDLE_CLIENT_TOKEN and PUBLIC_URL are set, the final notice keeps its cadence (Paddle never
says when it retries), the update page's headers, markup and refusals, and the doctor's Paddle lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from tests.conftest import base_config
from tests.fakes import RecordingMessenger
from tests.standins import serve
from tests.standins.paddle import API_KEY, WEBHOOK_SECRET, PaddleStandIn, signed_webhook
from webhook_app import create_app, dunning, migrate, tokens
from webhook_app.models import Click, DunningCase, Notification
from webhook_app.ops.doctor import run_checks
from webhook_app.providers.paddle.checkout import paddle_js
from webhook_app.services import Services
from webhook_app.states import CaseStatus, NotificationStatus
from webhook_app.worker import Worker

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"}
CLIENT_TOKEN = "test_0123456789abcdef0123456789a"
PUBLIC_URL = "https://recover.example.test"


@pytest.fixture
def paddle() -> Iterator[PaddleStandIn]:
    standin = PaddleStandIn()
    served = serve(standin.app)
    standin.base_url = served.url
    try:
        yield standin
    finally:
        served.stop()


@pytest.fixture
def make(database_url: str, clock: Any, paddle: PaddleStandIn) -> Iterator[Any]:
    """An app with Paddle in sandbox against the stand-in; returns (app, services, messenger)."""
    made: list[Services] = []

    def _make(**overrides: str) -> tuple[Any, Services, RecordingMessenger]:
        env = {
            "PADDLE_API_KEY": API_KEY,
            "PADDLE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PADDLE_CLIENT_TOKEN": CLIENT_TOKEN,
            "PADDLE_ENVIRONMENT": "sandbox",
            "PADDLE_API_BASE": paddle.base_url,
            **overrides,
        }
        messenger = RecordingMessenger()  # type: ignore[no-untyped-call]
        app = create_app(base_config(database_url, **env), messenger=messenger, clock=clock)
        svc: Services = app.extensions["webhook_app"]
        migrate.upgrade(svc.db)
        made.append(svc)
        return app, svc, messenger

    yield _make
    for svc in made:
        svc.db.dispose()


def renewal_failed(paddle: PaddleStandIn, country: str = "GB") -> dict[str, Any]:
    customer = paddle.add_customer("ada@example.com", "Ada Lovelace")
    sub = paddle.add_subscription(customer["id"], unit_amount=4900, country_code=country)
    return paddle.fail_renewal(sub["id"])


def deliver(app: Any, paddle: PaddleStandIn, event_type: str, data: dict[str, Any]) -> Any:
    body, headers = signed_webhook(paddle.event(event_type, data))
    return app.test_client().post("/webhooks/paddle", data=body, headers=headers)


def failed_and_messaged(app: Any, svc: Services, paddle: PaddleStandIn) -> tuple[dict[str, Any], Notification]:
    txn = renewal_failed(paddle)
    assert deliver(app, paddle, "transaction.payment_failed", txn).status_code == 200
    with app.app_context():
        Worker(svc).run_once()
    with svc.db.session() as s:
        first = s.scalars(select(Notification).where(Notification.step == 0)).one()
        s.expunge_all()
    return txn, first


def path(url: str) -> str:
    return url.removeprefix(PUBLIC_URL)


def test_the_first_message_carries_our_link_and_the_final_notice_keeps_its_cadence(
    make: Any, paddle: PaddleStandIn, clock: Any
) -> None:
    app, svc, messenger = make()
    txn, first = failed_and_messaged(app, svc, paddle)
    [message] = messenger.messages
    assert message.email == "ada@example.com" and message.update_payment_url.startswith(f"{PUBLIC_URL}/r/")
    assert message.portal_url is None  # no Paddle URL is put in an email
    assert first.status == NotificationStatus.SENT
    # Paddle never says when it retries: no final notice "now" as if that was the last attempt.
    with svc.db.session() as s:
        steps = {n.step: n for n in s.scalars(select(Notification))}
    assert sorted(steps) == [0, 1, 2, dunning.FINAL_STEP]
    assert steps[dunning.FINAL_STEP].run_at >= clock.now() + timedelta(days=12)
    # The sender re-read the transaction with its customer and address before messaging.
    reads = [r for r in paddle.requests if r["path"] == f"/transactions/{txn['id']}"]
    assert reads and reads[-1]["query"] == {"include": "customer,address"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"PADDLE_CLIENT_TOKEN": ""}, "PADDLE_CLIENT_TOKEN"), ({"PUBLIC_URL": ""}, "PUBLIC_URL")],
)
def test_without_a_client_token_or_public_url_messages_are_held_not_sent(
    make: Any, paddle: PaddleStandIn, overrides: dict[str, str], named: str
) -> None:
    app, svc, messenger = make(**overrides)
    _, first = failed_and_messaged(app, svc, paddle)
    assert messenger.messages == []
    assert first.status == NotificationStatus.HELD and named in (first.last_error or "")


def test_a_click_fetches_the_update_transaction_now_and_lands_on_our_page(make: Any, paddle: PaddleStandIn) -> None:
    app, svc, messenger = make()
    txn, _ = failed_and_messaged(app, svc, paddle)
    client = app.test_client()
    asked_before = [r for r in paddle.requests if r["path"].endswith("/update-payment-method-transaction")]

    click = client.get(path(messenger.messages[0].update_payment_url), headers=BROWSER)

    assert click.status_code == 303 and click.headers["Location"].startswith(f"{PUBLIC_URL}/pay/paddle/")
    asked = [r for r in paddle.requests if r["path"].endswith("/update-payment-method-transaction")]
    assert asked_before == [] and len(asked) == 1
    page = client.get(path(click.headers["Location"]))
    assert page.status_code == 200
    with app.app_context():
        assert page.headers["Content-Security-Policy"] == paddle_js(svc.settings).content_security_policy()
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "strict-origin"
    assert page.headers["X-Frame-Options"] == "DENY"
    html = page.get_data(as_text=True)
    assert f'data-transaction-id="{txn["id"]}"' in html and f'data-client-token="{CLIENT_TOKEN}"' in html
    assert 'data-environment="sandbox"' in html and f'src="{paddle.base_url}/paddle.js"' in html
    assert "Acme Cloud" in html and "$49.00" in html and "Ada Lovelace" in html
    # Nothing inline for the policy to forbid: every script is a file, no style attributes.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html)) and " style=" not in html
    with svc.db.session() as s:
        [recorded] = s.scalars(select(Click)).all()
    assert (recorded.provider, recorded.update_link_id) == ("paddle", txn["id"])


def page_token(svc: Services, case_id: int, reference: str = "txn_01hs0000000000000000000001", age: float = 0) -> str:
    class Aged(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age)

    secret = svc.settings.links.secret_key or tokens.DEV_SECRET
    serializer = URLSafeTimedSerializer(secret, salt=f"{tokens.PAGE_SALT}.paddle", signer=Aged)
    return str(serializer.dumps({"c": case_id, "r": reference}))


def test_the_page_refuses_expired_forged_foreign_and_settled_tokens(
    make: Any, paddle: PaddleStandIn, clock: Any
) -> None:
    app, svc, _ = make()
    failed_and_messaged(app, svc, paddle)
    with svc.db.session() as s:
        case = s.scalars(select(DunningCase)).one()
        case_id = case.id
    client = app.test_client()
    assert client.get(f"/pay/paddle/{page_token(svc, case_id)}").status_code == 200

    expired = client.get(f"/pay/paddle/{page_token(svc, case_id, age=tokens.PAGE_MAX_AGE_SECONDS + 60)}")
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    assert client.get(f"/pay/paddle/{page_token(svc, case_id)[:-3]}xyz").status_code == 404
    assert client.get(f"/pay/paddle/{page_token(svc, case_id, reference='sub_01')}").status_code == 404
    assert client.get(f"/pay/paddle/{page_token(svc, 999999)}").status_code == 404
    with app.app_context():
        stripe_page = tokens.page_url(svc.settings.links, "stripe", case_id, "txn_01")
    assert client.get(path(stripe_page).replace("/pay/stripe/", "/pay/paddle/")).status_code == 404
    # Every refusal is a plain page under the strict default policy: no Paddle script there.
    assert "cdn.paddle.com" not in expired.headers["Content-Security-Policy"]

    with svc.db.session() as s:
        s.get(DunningCase, case_id).status = CaseStatus.RECOVERED
    settled = client.get(f"/pay/paddle/{page_token(svc, case_id)}")
    assert settled.status_code == 200 and "up to date" in settled.get_data(as_text=True)
    assert "paddle.js" not in settled.get_data(as_text=True)


def test_a_click_while_paddle_is_down_shows_try_again_and_records_no_click(make: Any, paddle: PaddleStandIn) -> None:
    app, svc, messenger = make()
    failed_and_messaged(app, svc, paddle)
    paddle.faults.error_rate = 1.0  # every request answered 500
    response = app.test_client().get(path(messenger.messages[0].update_payment_url), headers=BROWSER)
    assert response.status_code == 503 and "try again" in response.get_data(as_text=True).lower()
    with svc.db.session() as s:
        assert s.scalars(select(Click)).all() == []


def doctor_lines(svc: Services, app: Any) -> dict[str, Any]:
    with app.app_context():
        return {c.name: c for c in run_checks(svc) if c.name.startswith("paddle")}


def test_doctor_checks_the_key_against_paddle_and_warns_about_paddles_own_emails(make: Any) -> None:
    app, svc, _ = make()
    lines = doctor_lines(svc, app)
    assert {name: c.status for name, c in lines.items()} == {
        "paddle webhook secret": "ok",
        "paddle key": "ok",
        "paddle client token": "ok",
        "paddle update page": "ok",
        "paddle emails": "warn",
    }
    assert "sandbox API key accepted" in lines["paddle key"].detail
    assert f"{PUBLIC_URL}/pay/paddle/<token>" in lines["paddle update page"].detail
    assert "merchant of record" in lines["paddle emails"].detail
    assert "DUNNING_CADENCE_DAYS" in (lines["paddle emails"].fix or "")


@pytest.mark.parametrize(
    ("overrides", "name", "expected"),
    [
        ({"PADDLE_API_KEY": "pdl_live_apikey_01hwrong"}, "paddle key", "is a production key"),
        ({"PADDLE_API_KEY": "pdl_sdbx_apikey_01hsomeoneelse"}, "paddle key", "PADDLE_API_KEY"),
        ({"PADDLE_CLIENT_TOKEN": "live_0123456789abcdef0123456789a"}, "paddle client token", "not a sandbox token"),
        ({"PADDLE_CLIENT_TOKEN": ""}, "paddle client token", "not set"),
        ({"PUBLIC_URL": ""}, "paddle update page", "PUBLIC_URL is not set"),
        ({"PADDLE_WEBHOOK_SECRET": ""}, "paddle webhook secret", "refused (503)"),
    ],
)
def test_doctor_names_what_is_wrong_with_the_paddle_setup(
    make: Any, overrides: dict[str, str], name: str, expected: str
) -> None:
    app, svc, _ = make(**overrides)
    check = doctor_lines(svc, app)[name]
    assert check.status == "fail" and expected in check.detail and check.fix
    assert "pdl_sdbx_apikey_01hsomeoneelse" not in check.detail


def test_the_campaign_port_lists_only_subscription_charges_with_their_emails(make: Any, paddle: PaddleStandIn) -> None:
    _, svc, _ = make()
    txn = renewal_failed(paddle, country="DE")
    other = paddle.add_customer("new@example.com")
    paddle.add_transaction(other["id"], origin="web")
    billing = svc.billing("paddle")
    [invoice] = list(billing.list_unpaid_invoices())
    assert (invoice.id, invoice.customer_email, invoice.customer_country) == (txn["id"], "ada@example.com", "DE")

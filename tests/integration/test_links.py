"""`GET /r/<token>`: fresh portal sessions on click, friendly pages otherwise, and attribution."""

from __future__ import annotations

import pytest

from tests.fixtures import stripe_objects as so
from tests.integration.test_recovery import all_rows, ts
from webhook_app import links, tokens
from webhook_app.errors import TransientError
from webhook_app.models import Click, LedgerEntry
from webhook_app.worker import Worker

BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15"}


@pytest.fixture
def failed_case(svc, deliver, billing, messenger):
    """A failed invoice whose first message went out; returns the link in it."""
    inv = so.invoice()
    billing.put(inv)
    deliver(so.event("invoice.payment_failed", inv))
    Worker(svc).run_once()
    return inv, messenger.messages[0].update_payment_url


def path_of(url: str) -> str:
    return url.split("https://recover.example.test", 1)[1]


def test_each_click_redirects_303_to_a_freshly_minted_session(app, svc, failed_case, billing):
    _, url = failed_case
    client = app.test_client()
    first = client.get(path_of(url), headers=BROWSER)
    second = client.get(path_of(url), headers=BROWSER)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] != second.headers["Location"]
    assert second.headers["Location"] == "https://billing.stripe.test/p/session/bps_3"  # bps_1 went in the email
    clicks = all_rows(svc, Click)
    assert [c.update_link_id for c in clicks] == ["bps_2", "bps_3"]
    assert all(c.notification_id == 1 for c in clicks)


def test_head_and_link_preview_bots_mint_nothing_and_count_nothing(app, svc, failed_case, billing):
    _, url = failed_case
    client = app.test_client()
    before = len(billing.sessions)
    assert client.head(path_of(url), headers=BROWSER).status_code == 200
    for agent in (
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "facebookexternalhit/1.1",
        "Mozilla/5.0 (compatible; Microsoft Office/16.0; Outlook)",
        "Twitterbot/1.0",
    ):
        page = client.get(path_of(url), headers={"User-Agent": agent})
        assert page.status_code == 200 and b"Continue" in page.data
    assert len(billing.sessions) == before
    assert all_rows(svc, Click) == []


def test_tampered_token_is_404(app, failed_case):
    _, url = failed_case
    token = path_of(url).rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    response = app.test_client().get(f"/r/{tampered}", headers=BROWSER)
    assert response.status_code == 404 and b"could not find" in response.data


def test_token_for_another_case_cannot_be_made_without_the_secret(app, svc, failed_case, clock):
    from webhook_app.config import load_settings

    forged = tokens.make_token(load_settings({"SECRET_KEY": "attacker-guess"}).links, case_id=1, clock=clock)
    assert app.test_client().get(f"/r/{forged}", headers=BROWSER).status_code == 404


def test_unknown_case_is_404(app, svc, clock):
    token = tokens.make_token(svc.settings.links, case_id=999999, clock=clock)
    assert app.test_client().get(f"/r/{token}", headers=BROWSER).status_code == 404


def test_expired_token_is_410_and_says_how_to_get_a_new_link(app, failed_case, clock):
    _, url = failed_case
    clock.advance(days=29)
    assert app.test_client().get(path_of(url), headers=BROWSER).status_code == 303
    clock.advance(days=2)
    response = app.test_client().get(path_of(url), headers=BROWSER)
    assert response.status_code == 410
    assert b"expired" in response.data and b"latest email" in response.data


def test_closed_case_shows_payment_up_to_date_with_a_link_back(app, svc, deliver, failed_case):
    inv, url = failed_case
    deliver(so.event("invoice.paid", dict(inv, status="paid", attempt_count=2)))
    Worker(svc).run_once()
    response = app.test_client().get(path_of(url), headers=BROWSER)
    assert response.status_code == 200
    assert b"up to date" in response.data and b"https://app.example.test/billing" in response.data
    assert b"Acme Cloud" in response.data


def test_stripe_down_shows_503_with_a_retry_hint_and_records_no_click(app, svc, failed_case, billing):
    _, url = failed_case
    billing.fail_with = TransientError("Stripe unavailable (503)")
    response = app.test_client().get(path_of(url), headers=BROWSER)
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert b"try again" in response.data
    assert all_rows(svc, Click) == []


def test_clicks_are_rate_limited_per_token(app, failed_case):
    _, url = failed_case
    client = app.test_client()
    statuses = [client.get(path_of(url), headers=BROWSER).status_code for _ in range(links.CLICK_LIMIT + 1)]
    assert statuses[:-1] == [303] * links.CLICK_LIMIT and statuses[-1] == 429


def test_pages_carry_security_headers(app, failed_case):
    _, _url = failed_case
    response = app.test_client().get("/r/not-a-token", headers=BROWSER)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_without_public_url_the_raw_session_url_is_sent_with_login_fallback(make_app, billing, messenger):
    app = make_app(PUBLIC_URL="")
    from webhook_app.services import services

    with app.app_context():
        svc = services()
    inv = so.invoice()
    billing.put(inv)
    body, headers = so.signed(so.event("invoice.payment_failed", inv), "whsec_test_primary_0123456789")
    app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    Worker(svc).run_once()
    data = messenger.messages[0].data_variables()
    assert data["updatePaymentUrl"] == data["portalUrl"] == "https://billing.stripe.test/p/session/bps_1"
    assert billing.sessions[0]["for_email"] is True


# -- attribution: the three ways money comes back --------------------------------------------------
def test_recovery_after_a_click_is_attributed_to_the_link_with_timings(app, svc, deliver, failed_case, clock):
    inv, url = failed_case
    clock.advance(hours=2)
    app.test_client().get(path_of(url), headers=BROWSER)
    clock.advance(minutes=10)
    deliver(
        so.event("invoice.paid", dict(inv, status="paid", attempt_count=2, status_transitions={"paid_at": ts(clock)}))
    )
    Worker(svc).run_once()
    [entry] = all_rows(svc, LedgerEntry)
    assert entry.attribution == "link_click"
    assert entry.seconds_message_to_click == 2 * 3600
    assert entry.seconds_click_to_payment == 600


def test_recovery_by_stripes_own_retry_without_a_click(svc, deliver, failed_case, clock):
    inv, _ = failed_case
    clock.advance(days=2)
    deliver(
        so.event("invoice.paid", dict(inv, status="paid", attempt_count=2, status_transitions={"paid_at": ts(clock)}))
    )
    Worker(svc).run_once()
    [entry] = all_rows(svc, LedgerEntry)
    assert entry.attribution == "provider_retry" and entry.first_click_at is None


@pytest.mark.parametrize("api_version", [so.LEGACY, so.BASIL])
def test_paid_out_of_band_without_a_charge_attempt(svc, deliver, failed_case, clock, api_version):
    inv, _ = failed_case
    paid = dict(inv, status="paid", attempt_count=1, status_transitions={"paid_at": ts(clock)})
    if api_version == so.LEGACY:
        paid.update(paid_out_of_band=True, paid=True)
    deliver(so.event("invoice.paid", paid, api_version=api_version))
    Worker(svc).run_once()
    [entry] = all_rows(svc, LedgerEntry)
    assert entry.attribution == "out_of_band"

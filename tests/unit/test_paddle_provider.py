"""PaddleProvider as the core sees it: the ports, receiving a delivery, dashboard links, and the update
page's script source and Content-Security-Policy (never the stand-in's in production)."""

from __future__ import annotations

import time

import pytest

from tests.standins.paddle import API_KEY, WEBHOOK_SECRET, PaddleStandIn, signed_webhook
from webhook_app.config import load_settings
from webhook_app.errors import WebhookRejected
from webhook_app.providers import build_providers
from webhook_app.providers.base import Billing, Provider
from webhook_app.providers.paddle import PaddleProvider, build
from webhook_app.providers.paddle.checkout import PADDLE_JS, paddle_js
from webhook_app.providers.paddle.webhook import sign

STANDIN = "http://127.0.0.1:8765"


def provider(**env: str) -> PaddleProvider:
    config = {
        "PADDLE_API_KEY": API_KEY,
        "PADDLE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PADDLE_CLIENT_TOKEN": "test_0123456789abcdef0123456789a",
        "PADDLE_ENVIRONMENT": "sandbox",
        "SECRET_KEY": "unit-secret",
        **env,
    }
    return build(load_settings(config))


def test_the_provider_and_its_runtime_port_fulfil_the_core_protocols() -> None:
    paddle = provider()
    assert isinstance(paddle, Provider)
    assert isinstance(paddle.billing, Billing)
    assert "paddle" in build_providers(load_settings({}))
    assert paddle.handled_event_types == tuple(sorted(paddle.handled_event_types))
    assert {"transaction.payment_failed", "transaction.completed", "payment_method.saved"} <= set(
        paddle.handled_event_types
    )


def test_a_verified_delivery_becomes_an_inbox_event_keyed_on_event_id() -> None:
    paddle = PaddleStandIn()
    envelope = paddle.event("transaction.past_due", {"id": "txn_01hs0000000000000000000001"})
    envelope["occurred_at"] = "2026-11-02T10:00:00.123456+01:00"
    body, headers = signed_webhook(envelope)
    incoming = provider().receive(headers, body)
    assert (incoming.event_id, incoming.type) == (envelope["event_id"], "transaction.past_due")
    assert incoming.occurred_at.isoformat() == "2026-11-02T09:00:00.123456"  # naive UTC, as stored
    assert incoming.livemode is False and incoming.payload == body.decode()
    assert provider(PADDLE_ENVIRONMENT="production").receive(headers, body).livemode is True


def test_a_delivery_signed_with_another_secret_is_refused_with_400() -> None:
    body, headers = signed_webhook({"event_id": "evt_01"}, secret="pdl_ntfset_not_ours")
    with pytest.raises(WebhookRejected) as refused:
        provider().receive(headers, body)
    assert refused.value.status == 400 and WEBHOOK_SECRET not in str(refused.value)


def test_a_body_that_is_not_utf8_is_refused_not_a_500() -> None:
    body = '{"event_id":"evt_01","event_type":"transaction.paid","occurred_at":"2026-11-02T10:00:00Z","data":{}}'
    raw = body.encode("utf-16")
    stamp = int(time.time())
    with pytest.raises(WebhookRejected, match="UTF-8"):
        provider().receive({"Paddle-Signature": f"ts={stamp};h1={sign(raw, WEBHOOK_SECRET, stamp)}"}, raw)


def test_intake_needs_the_secret_and_the_api_key_and_sending_the_client_token() -> None:
    assert provider().missing_for_intake() == [] and provider().missing_for_sending() == []
    bare = build(load_settings({}))
    assert bare.missing_for_intake() == ["PADDLE_WEBHOOK_SECRET", "PADDLE_API_KEY"]
    assert bare.missing_for_sending() == ["PADDLE_API_KEY", "PADDLE_CLIENT_TOKEN"]
    assert bare.enabled is False and bare.billing is None


def test_dashboard_links_point_at_the_environment_of_the_row() -> None:
    paddle = provider()
    assert paddle.dashboard_url("invoice", "txn_1", True) == "https://vendors.paddle.com/transactions-v2/txn_1"
    assert paddle.dashboard_url("customer", "ctm_1", False) == "https://sandbox-vendors.paddle.com/customers-v2/ctm_1"
    assert paddle.dashboard_url("refund", "x", True) is None


def test_production_always_loads_paddles_own_script_even_with_a_loopback_api_base() -> None:
    settings = load_settings(
        {"APP_ENV": "production", "SECRET_KEY": "s", "PADDLE_API_BASE": STANDIN, "PADDLE_ENVIRONMENT": "production"}
    )
    script = paddle_js(settings)
    assert script.url == PADDLE_JS and script.stand_in_origin is None
    policy = script.content_security_policy()
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["script-src"] == "'self' https://cdn.paddle.com"
    assert directives["frame-src"] == "https://buy.paddle.com https://cdn.paddle.com"
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "127.0.0.1" not in policy and "sandbox" not in policy
    assert "unsafe" not in policy and "*" not in policy and "http:" not in policy


def test_sandbox_policy_allows_the_sandbox_checkout_and_cdn_only() -> None:
    policy = paddle_js(load_settings({"PADDLE_ENVIRONMENT": "sandbox"})).content_security_policy()
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert (
        directives["frame-src"]
        == "https://sandbox-buy.paddle.com https://cdn.paddle.com https://sandbox-cdn.paddle.com"
    )
    assert "https://buy.paddle.com" not in policy


def test_outside_production_a_loopback_api_base_serves_the_stand_ins_stub_under_its_origin() -> None:
    script = paddle_js(load_settings({"PADDLE_API_BASE": f"{STANDIN}/", "PADDLE_ENVIRONMENT": "sandbox"}))
    assert script.url == f"{STANDIN}/paddle.js"
    assert f"script-src 'self' {STANDIN};" in script.content_security_policy()
    remote = paddle_js(load_settings({"PADDLE_API_BASE": "https://sandbox-api.paddle.com"}))
    assert remote.url == PADDLE_JS

"""`webhook-app portal setup` and `webhook-app stripe register-endpoint` against the Stripe stand-in."""

from __future__ import annotations

import pytest

from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.integration.ops_env import open_ops_env
from webhook_app.providers.stripe.translate import TRANSLATORS as HANDLERS

URL = "https://recover.example.test/webhooks/stripe"


@pytest.fixture
def env(sqlite_url, clock):
    environment, close = open_ops_env(sqlite_url, clock)
    yield environment
    close()


def posts(env, path: str) -> list[dict]:
    return [params for method, p, params in env.stripe.requests if method == "POST" and p == path]


def test_portal_setup_creates_the_recovery_configuration_and_prints_its_id(env):
    result = env.cli("portal", "setup")

    assert result.exit_code == 0, result.output
    [config] = env.stripe.portal_configurations.values()
    assert f"created Billing Portal configuration {config['id']} (test mode)" in result.output
    assert f"Set STRIPE_PORTAL_CONFIGURATION={config['id']}" in result.output
    [sent] = posts(env, "/v1/billing_portal/configurations")
    assert sent["features"] == {
        "payment_method_update": {"enabled": "true"},
        "invoice_history": {"enabled": "true"},
        "subscription_cancel": {"enabled": "false"},
    }
    assert sent["business_profile"] == {"headline": "Update your payment method"}
    assert sent["default_return_url"] == "https://app.example.test/billing"  # PORTAL_RETURN_URL
    assert sent["metadata"] == {"managed_by": "webhook-app", "purpose": "payment-recovery"}


def test_portal_setup_run_again_updates_the_same_configuration_instead_of_creating_another(env):
    unrelated = env.stripe.add_portal_configuration(is_default=True)  # the account's own, left alone
    first = env.cli("portal", "setup")
    [ours] = [c for c in env.stripe.portal_configurations.values() if c["id"] != unrelated["id"]]

    second = env.cli("portal", "setup", "--subscription-cancel", "--no-invoice-history", "--headline", "Fix billing")

    assert first.exit_code == second.exit_code == 0, second.output
    assert len(env.stripe.portal_configurations) == 2  # still just ours and the unrelated one
    assert len(posts(env, "/v1/billing_portal/configurations")) == 1
    [update] = posts(env, f"/v1/billing_portal/configurations/{ours['id']}")
    assert f"updated Billing Portal configuration {ours['id']}" in second.output
    assert f"Set STRIPE_PORTAL_CONFIGURATION={ours['id']}" in second.output
    assert update["features"]["subscription_cancel"] == {"enabled": "true"}
    assert update["features"]["invoice_history"] == {"enabled": "false"}
    assert ours["business_profile"]["headline"] == "Fix billing" and ours["active"] is True
    assert unrelated["features"] == {"payment_method_update": {"enabled": True}}
    assert posts(env, f"/v1/billing_portal/configurations/{unrelated['id']}") == []


def test_portal_setup_says_when_the_setting_already_names_it(sqlite_url, clock):
    environment, close = open_ops_env(sqlite_url, clock)
    try:
        environment.cli("portal", "setup")
        [config] = environment.stripe.portal_configurations.values()
    finally:
        close()
    environment, close = open_ops_env(sqlite_url, clock, STRIPE_PORTAL_CONFIGURATION=config["id"])
    try:
        environment.stripe.portal_configurations[config["id"]] = config
        result = environment.cli("portal", "setup")
        assert "STRIPE_PORTAL_CONFIGURATION already names it." in result.output
    finally:
        close()


def test_portal_setup_with_a_rejected_key_fails_clearly_without_printing_it(env):
    env.stripe.key_valid = False

    result = env.cli("portal", "setup")

    assert result.exit_code == 1
    assert "Stripe rejected STRIPE_SECRET_KEY (401)" in result.output
    assert STRIPE_KEY not in result.output


def test_register_endpoint_subscribes_exactly_the_handled_events_and_prints_the_secret_once(env):
    created = env.cli("stripe", "register-endpoint", "--url", URL)

    assert created.exit_code == 0, created.output
    [endpoint] = env.stripe.webhook_endpoints.values()
    assert sorted(endpoint["enabled_events"]) == sorted(HANDLERS)
    assert endpoint["url"] == URL and endpoint["api_version"]  # pinned to the SDK's version
    secret = f"whsec_created_{endpoint['id']}_secretvalue"
    assert created.output.count(secret) == 1
    assert "Signing secret (shown once)" in created.output

    # Someone narrowed the events in the Dashboard; the next run puts them back, on the same endpoint.
    endpoint["enabled_events"] = ["invoice.paid", "charge.refunded"]
    updated = env.cli("stripe", "register-endpoint", "--url", URL)

    assert updated.exit_code == 0, updated.output
    assert len(env.stripe.webhook_endpoints) == 1
    assert sorted(endpoint["enabled_events"]) == sorted(HANDLERS)
    assert f"updated webhook endpoint {endpoint['id']}" in updated.output
    assert "whsec_" not in updated.output and "signing secret is unchanged" in updated.output
    assert WEBHOOK_SECRET not in created.output + updated.output


def test_register_endpoint_rejects_a_relative_url_and_warns_about_http(env):
    bad = env.cli("stripe", "register-endpoint", "--url", "/webhooks/stripe")
    assert bad.exit_code == 2 and "absolute http(s) URL" in bad.output
    assert env.stripe.webhook_endpoints == {}

    plain = env.cli("stripe", "register-endpoint", "--url", "http://localhost:5000/hooks")
    assert plain.exit_code == 0
    assert "live mode requires an https URL" in plain.output
    assert "different path" in plain.output


def test_operator_commands_need_a_stripe_key(sqlite_url, clock):
    environment, close = open_ops_env(sqlite_url, clock, STRIPE_SECRET_KEY="")
    try:
        for args in (["portal", "setup"], ["stripe", "register-endpoint", "--url", URL], ["events", "sync"]):
            result = environment.cli(*args)
            assert result.exit_code == 1, args
            assert "STRIPE_SECRET_KEY is not set" in result.output
    finally:
        close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["portal", "setup", "--headline", "x" * 61], "--headline is 61 characters; Stripe allows at most 60"),
        (["portal", "setup", "--return-url", "app.example.test/billing"], "must be an absolute http(s) URL"),
        (
            ["stripe", "register-endpoint", "--url", URL, "--api-version", "latest"],
            "'latest' is not a Stripe API version",
        ),
    ],
    ids=["headline over 60", "relative return url", "api version"],
)
def test_values_stripe_would_refuse_are_refused_before_any_request(env, args, message):
    result = env.cli(*args)

    assert result.exit_code == 2, result.output  # a usage error, named
    assert message in result.output
    assert env.stripe.requests == []  # nothing reached Stripe


def test_a_headline_of_exactly_60_characters_is_sent(env):
    result = env.cli("portal", "setup", "--headline", "y" * 60)

    assert result.exit_code == 0, result.output
    [sent] = posts(env, "/v1/billing_portal/configurations")
    assert sent["business_profile"] == {"headline": "y" * 60}


def test_a_dated_api_version_is_accepted(env):
    result = env.cli("stripe", "register-endpoint", "--url", URL, "--api-version", "2025-03-31.basil")

    assert result.exit_code == 0, result.output
    [sent] = posts(env, "/v1/webhook_endpoints")
    assert sent["api_version"] == "2025-03-31.basil"

"""`webhook-app doctor`: a ✓ line per healthy check, and for each broken setting its ✗ line and fix."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import STRIPE_KEY, WEBHOOK_SECRET
from tests.integration.ops_env import LOOPS_KEY, open_ops_env
from tests.standins import serve
from tests.standins.intercom import IntercomStandIn
from webhook_app.providers.stripe.translate import TRANSLATORS as HANDLERS

PUBLIC_URL = "https://recover.example.test"
ENDPOINT_URL = f"{PUBLIC_URL}/webhooks/stripe"
PORTAL_ID = "bpc_recovery"
SECRETS = (STRIPE_KEY, WEBHOOK_SECRET, LOOPS_KEY, "test-secret-key-for-links", "intercom_token_abcdef")


def healthy(stripe) -> None:
    """A Stripe account set up as the README says: endpoint registered, portal configured."""
    stripe.add_webhook_endpoint(ENDPOINT_URL, sorted(HANDLERS))
    stripe.add_portal_configuration(id=PORTAL_ID, metadata={"managed_by": "webhook-app", "purpose": "payment-recovery"})


def doctor(database_url, clock, setup=healthy, migrate_db=True, **overrides):
    settings = {"STRIPE_PORTAL_CONFIGURATION": PORTAL_ID, **overrides}
    env, close = open_ops_env(database_url, clock, migrate_db=migrate_db, **settings)
    try:
        setup(env.stripe)
        result = env.cli("doctor")
    finally:
        close()
    for secret in SECRETS:
        assert secret not in result.output
    return result


def line(output: str, name: str) -> tuple[str, str | None]:
    """The check's line and the fix line under it (if any)."""
    lines = output.splitlines()
    for i, text in enumerate(lines):
        if text[2:].startswith(name):
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return text, following if following.startswith("fix:") else None
    raise AssertionError(f"no {name!r} line in:\n{output}")


def test_a_healthy_setup_is_all_ticks(database_url, clock):
    result = doctor(database_url, clock)

    assert result.exit_code == 0, result.output
    for name in (
        "environment",
        "database",
        "webhook secret",
        "stripe key",
        "webhook endpoint",
        "billing portal",
        "messenger",
        "recovery links",
    ):
        text, fix = line(result.output, name)
        assert text.startswith("✓"), text
        assert fix is None
    assert "valid, test mode" in line(result.output, "stripe key")[0]
    assert "Loops team Acme Cloud" in line(result.output, "messenger")[0]
    assert "everything needed is in place" in result.output


def no_endpoint(stripe):
    stripe.add_portal_configuration(id=PORTAL_ID)


def narrow_endpoint(stripe):
    healthy(stripe)
    next(iter(stripe.webhook_endpoints.values()))["enabled_events"] = ["invoice.paid", "invoice.payment_failed"]


def disabled_endpoint(stripe):
    healthy(stripe)
    next(iter(stripe.webhook_endpoints.values()))["status"] = "disabled"


def no_portal(stripe):
    stripe.add_webhook_endpoint(ENDPOINT_URL, sorted(HANDLERS))


def portal_without_payment_methods(stripe):
    healthy(stripe)
    stripe.portal_configurations[PORTAL_ID]["features"] = {"payment_method_update": {"enabled": False}}


def rejected_key(stripe):
    healthy(stripe)
    stripe.key_valid = False


REGISTER = f"fix: webhook-app stripe register-endpoint --url {ENDPOINT_URL}"
BROKEN = {
    "stripe key rejected": (
        dict(),
        rejected_key,
        "stripe key",
        "Stripe rejected STRIPE_SECRET_KEY (401)",
        "https://dashboard.stripe.com/apikeys",
    ),
    "stripe key missing": (
        dict(STRIPE_SECRET_KEY=""),
        healthy,
        "stripe key",
        "STRIPE_SECRET_KEY is not set",
        "https://dashboard.stripe.com/apikeys",
    ),
    "no webhook endpoint": (
        dict(),
        no_endpoint,
        "webhook endpoint",
        f"no endpoint is registered for {ENDPOINT_URL}",
        REGISTER,
    ),
    "endpoint lacks event types": (
        dict(),
        narrow_endpoint,
        "webhook endpoint",
        "is not subscribed to " + ", ".join(sorted(set(HANDLERS) - {"invoice.paid", "invoice.payment_failed"})),
        REGISTER,
    ),
    "endpoint disabled": (dict(), disabled_endpoint, "webhook endpoint", "is disabled", REGISTER),
    "no portal configuration": (
        dict(STRIPE_PORTAL_CONFIGURATION=""),
        no_portal,
        "billing portal",
        "no portal configuration",
        "run `webhook-app portal setup`",
    ),
    "portal configuration missing": (
        dict(),
        no_portal,
        "billing portal",
        f"{PORTAL_ID} does not exist in this mode",
        "run `webhook-app portal setup`",
    ),
    "portal cannot update payment methods": (
        dict(),
        portal_without_payment_methods,
        "billing portal",
        "does not let customers update their payment method",
        "run `webhook-app portal setup`",
    ),
    "loops key missing": (
        dict(LOOPS_API_KEY=""),
        healthy,
        "messenger",
        "LOOPS_API_KEY is not set",
        "set LOOPS_API_KEY",
    ),
    "webhook secret missing": (
        dict(STRIPE_WEBHOOK_SECRET=""),
        healthy,
        "webhook secret",
        "STRIPE_WEBHOOK_SECRET is not set",
        "register-endpoint` prints it",
    ),
    "secret key missing for links": (
        dict(SECRET_KEY=""),
        healthy,
        "recovery links",
        "PUBLIC_URL is set but SECRET_KEY is not",
        "secrets.token_urlsafe",
    ),
    "malformed setting": (
        dict(LINK_MAX_AGE_DAYS="soon"),
        healthy,
        "environment",
        "LINK_MAX_AGE_DAYS must be a int",
        "correct the variable",
    ),
}


@pytest.mark.parametrize("overrides, setup, name, detail, fix", BROKEN.values(), ids=BROKEN.keys())
def test_each_broken_setting_gets_a_cross_and_its_fix(sqlite_url, clock, overrides, setup, name, detail, fix):
    result = doctor(sqlite_url, clock, setup=setup, **overrides)

    assert result.exit_code == 1
    text, fix_line = line(result.output, name)
    assert text.startswith("✗") and detail in text, text
    assert fix_line and fix in fix_line, fix_line
    assert "problem(s) to fix" in result.output


def test_a_rejected_loops_key_is_a_cross_with_its_fix(sqlite_url, clock):
    env, close = open_ops_env(sqlite_url, clock, STRIPE_PORTAL_CONFIGURATION=PORTAL_ID)
    try:
        healthy(env.stripe)
        env.loops.key_valid = False
        result = env.cli("doctor")
    finally:
        close()
    assert result.exit_code == 1
    text, fix = line(result.output, "messenger")
    assert text.startswith("✗ messenger") and "HTTP 401" in text and "LOOPS_API_KEY" in fix
    assert LOOPS_KEY not in result.output


def test_a_rejected_intercom_token_is_a_cross_with_its_fix(sqlite_url, clock):
    intercom = IntercomStandIn(token="intercom_token_of_another_workspace")
    served = serve(intercom.app)
    env, close = open_ops_env(
        sqlite_url,
        clock,
        STRIPE_PORTAL_CONFIGURATION=PORTAL_ID,
        MESSAGING_PROVIDER="intercom",
        INTERCOM_ACCESS_TOKEN="intercom_token_abcdef",
        INTERCOM_API_BASE=served.url,
    )
    try:
        healthy(env.stripe)
        result = env.cli("doctor")
    finally:
        close()
        served.stop()
    assert result.exit_code == 1
    text, fix = line(result.output, "messenger")
    assert text.startswith("✗ messenger") and "Intercom rejected INTERCOM_ACCESS_TOKEN" in text
    assert "INTERCOM_API_BASE" in fix
    assert "intercom_token_abcdef" not in result.output


def test_an_unmigrated_database_is_a_cross_with_the_upgrade_command(database_url, clock):
    if database_url.startswith("sqlite"):
        sqlite3.connect(database_url.split("///", 1)[1]).close()  # there, but empty
    result = doctor(database_url, clock, migrate_db=False)

    assert result.exit_code == 1
    text, fix = line(result.output, "database")
    assert text.startswith("✗") and "not migrated" in text
    assert fix == "fix: run `webhook-app db upgrade`"


def test_an_unreachable_database_is_a_cross(sqlite_url, clock):
    result = doctor("postgresql://postgres@127.0.0.1:1/nothing", clock, migrate_db=False)

    assert result.exit_code == 1
    text, fix = line(result.output, "database")
    assert text.startswith("✗") and "unreachable" in text and "DATABASE_URL" in fix


def test_missing_public_url_is_a_warning_not_a_failure(sqlite_url, clock):
    result = doctor(sqlite_url, clock, PUBLIC_URL="")

    assert result.exit_code == 0, result.output
    text, fix = line(result.output, "recovery links")
    assert text.startswith("!") and "raw portal session URLs" in text and "PUBLIC_URL" in fix
    # Without PUBLIC_URL the endpoint check looks for any URL ending in /webhooks/stripe.
    assert line(result.output, "webhook endpoint")[0].startswith("✓")


def test_checks_that_need_a_working_key_say_they_were_not_checked(sqlite_url, clock):
    result = doctor(sqlite_url, clock, setup=rejected_key)

    for name in ("webhook endpoint", "billing portal"):
        text, _ = line(result.output, name)
        assert text.startswith("!") and "not checked: Stripe rejected the key" in text
    assert "1 problem(s) to fix" in result.output


def test_a_malformed_key_is_reported_once_by_the_line_that_says_what_is_wrong(sqlite_url, clock):
    result = doctor(sqlite_url, clock, STRIPE_SECRET_KEY="pk_test_publishable_by_mistake")

    problems = [" ".join(ln.split()) for ln in result.output.splitlines() if ln[:1] in "✗!" and "not checked" not in ln]
    assert [ln for ln in problems if "STRIPE_SECRET_KEY" in ln] == [
        "✗ environment STRIPE_SECRET_KEY must start with sk_ or rk_"
    ]
    for name in ("webhook endpoint", "billing portal"):
        assert line(result.output, name)[0].startswith("!") and "not checked" in line(result.output, name)[0]
    assert "pk_test_publishable_by_mistake" not in result.output


def test_production_escalates_what_would_stop_start_up(sqlite_url, clock):
    result = doctor(sqlite_url, clock, APP_ENV="production", PUBLIC_URL="", SECRET_KEY="")

    assert " ".join(line(result.output, "recovery links")[0].split()).startswith(
        "✗ recovery links PUBLIC_URL is not set"
    )
    assert " ".join(line(result.output, "link signing")[0].split()) == "✗ link signing SECRET_KEY is not set"
    assert sum("SECRET_KEY" in ln for ln in result.output.splitlines() if ln[:1] == "✗") == 1
    assert "APP_ENV=production: the web and worker processes will not start until the ✗ lines are fixed" in (
        result.output
    )


def test_a_stripe_html_error_page_is_shown_as_text(sqlite_url, clock):
    env, close = open_ops_env(sqlite_url, clock, STRIPE_PORTAL_CONFIGURATION=PORTAL_ID)
    try:
        healthy(env.stripe)
        env.stripe.html_errors["/v1/balance"] = (
            502,
            "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
        )
        result = env.cli("doctor")
    finally:
        close()
    text, _ = line(result.output, "stripe key")
    assert text.startswith("✗ stripe key") and "could not reach Stripe" in text
    assert "an HTML page (502 Bad Gateway)" in text and "<" not in text
    for name in ("webhook endpoint", "billing portal"):
        assert "not checked: Stripe could not be reached" in line(result.output, name)[0]


@pytest.mark.postgres
def test_the_connection_budget_is_compared_with_the_servers_limit(postgres_url, clock):
    fits = doctor(postgres_url, clock)
    text, _ = line(fits.output, "connections")
    assert text.startswith("✓ connections")
    assert "up to 15: 5 per process (DB_POOL_SIZE 4 + DB_MAX_OVERFLOW 1) x (2 web (WEB_CONCURRENCY) + 1 worker)" in text
    assert "this server's max_connections" in text

    too_many = doctor(postgres_url, clock, DB_POOL_SIZE="200", DB_MAX_OVERFLOW="0", WEB_CONCURRENCY="8")
    text, fix = line(too_many.output, "connections")
    assert text.startswith("✗ connections") and "up to 1800" in text and "more than the" in text
    assert fix and "DB_POOL_SIZE" in fix


def test_sqlite_has_no_pool_to_size(sqlite_url, clock):
    text, _ = line(doctor(sqlite_url, clock).output, "connections")
    assert text.startswith("✓ connections") and "sqlite" in text

"""`webhook-app doctor` with Chargebee on: its webhook basic auth, its key and site, and the standing
warning about Chargebee's own dunning emails. Stripe, Loops and Chargebee are stand-ins on real
sockets (Chargebee's reached through CHARGEBEE_API_BASE)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.integration.ops_env import open_ops_env
from tests.standins import Faults, free_port, serve
from tests.standins.chargebee import ChargebeeStandIn

API_KEY = "test_cbKey0123456789abcdef"
PASSWORD = "a-long-random-webhook-password"
CHARGEBEE = {
    "CHARGEBEE_SITE": "acme-test",
    "CHARGEBEE_API_KEY": API_KEY,
    "CHARGEBEE_WEBHOOK_USERNAME": "cb-hooks",
    "CHARGEBEE_WEBHOOK_PASSWORD": PASSWORD,
}


def doctor(sqlite_url, clock, chargebee=None, **overrides) -> dict[str, tuple[str, str | None]]:
    """name -> (its line, the fix line under it or None), for the Chargebee lines of a doctor run.

    `chargebee`: the stand-in to serve (a working site with our key by default), or "unreachable" for
    an address where nothing listens.
    """
    with ExitStack() as stack:
        if chargebee == "unreachable":
            api_base = f"http://127.0.0.1:{free_port()}/api/v2"
        else:
            standin = chargebee or ChargebeeStandIn(api_key=API_KEY, site="acme-test")
            served = serve(standin.app)
            stack.callback(served.stop)
            api_base = f"{served.url}/api/v2"
        env, close = open_ops_env(sqlite_url, clock, **{**CHARGEBEE, "CHARGEBEE_API_BASE": api_base, **overrides})
        stack.callback(close)
        result = env.cli("doctor")
    for secret in (API_KEY, PASSWORD):
        assert secret not in result.output
    lines = result.output.splitlines()
    found = {}
    for i, text in enumerate(lines):
        if text[2:].startswith("chargebee"):
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            found[text[2:].split("  ")[0].strip()] = (text, following if following.startswith("fix:") else None)
    return found


def test_a_working_setup_is_ticked_with_a_standing_warning_about_chargebees_emails(sqlite_url, clock):
    lines = doctor(sqlite_url, clock)

    webhook, fix = lines["chargebee webhook"]
    assert webhook.startswith("✓") and "https://recover.example.test/webhooks/chargebee" in webhook and fix is None
    key, _ = lines["chargebee key"]
    assert key.startswith("✓") and "site acme-test" in key and "(test site)" in key
    emails, fix = lines["chargebee emails"]
    assert emails.startswith("!") and "two" in emails
    assert fix is not None and "Email Notifications" in fix


def test_missing_webhook_credentials_are_a_cross_naming_both_and_where_to_paste_them(sqlite_url, clock):
    lines = doctor(sqlite_url, clock, CHARGEBEE_WEBHOOK_USERNAME="", CHARGEBEE_WEBHOOK_PASSWORD="")
    text, fix = lines["chargebee webhook"]
    assert text.startswith("✗") and "CHARGEBEE_WEBHOOK_USERNAME and CHARGEBEE_WEBHOOK_PASSWORD" in text
    assert fix is not None and "API Keys and Webhooks" in fix and "basic authentication" in fix


def test_a_short_webhook_password_is_a_warning(sqlite_url, clock):
    text, fix = doctor(sqlite_url, clock, CHARGEBEE_WEBHOOK_PASSWORD="hunter2")["chargebee webhook"]
    assert text.startswith("!") and "shorter than 16" in text
    assert fix is not None and "random" in fix


def test_a_rejected_key_is_a_cross_asking_for_the_key(sqlite_url, clock):
    another_sites_key = ChargebeeStandIn(api_key="test_cbKeyOfAnotherSite000000", site="acme-test")

    text, fix = doctor(sqlite_url, clock, chargebee=another_sites_key)["chargebee key"]
    assert text.startswith("✗") and "CHARGEBEE_API_KEY" in text
    assert fix is not None and "API Keys" in fix


@pytest.mark.parametrize(
    "failure",
    [lambda: ChargebeeStandIn(api_key=API_KEY, faults=Faults(error_rate=1.0)), lambda: "unreachable"],
    ids=["5xx", "unreachable"],
)
def test_chargebee_down_is_a_cross_saying_it_could_not_be_reached(sqlite_url, clock, failure):
    text, fix = doctor(sqlite_url, clock, chargebee=failure())["chargebee key"]
    assert text.startswith("✗") and "could not reach Chargebee" in text
    assert fix is not None and "CHARGEBEE_API_BASE" in fix

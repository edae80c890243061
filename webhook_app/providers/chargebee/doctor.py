"""Chargebee's doctor lines: webhook basic auth, the API key and site, and Chargebee's own dunning emails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webhook_app.errors import ConfigurationNeeded, RecoveryError
from webhook_app.ops.doctor import FAIL, OK, WARN, Check
from webhook_app.services import Services

if TYPE_CHECKING:
    from webhook_app.providers.chargebee import ChargebeeProvider

# Basic auth is the only check on a delivery (the worker confirms events through the API, but a
# guessable password still lets anyone fill the inbox): ask for a long random one.
MIN_PASSWORD_LENGTH = 16
WEBHOOK_SETTINGS = "Chargebee: Settings > Configure Chargebee > API Keys and Webhooks > Webhooks"
EMAIL_SETTINGS = "Chargebee: Settings > Configure Chargebee > Email Notifications > Revenue Recovery"


def checks(svc: Services, provider: ChargebeeProvider) -> list[Check]:
    """Chargebee's lines, in the order an operator fixes things."""
    return [_webhook_auth(svc, provider), _api(provider), _own_dunning_emails()]


def _webhook_auth(svc: Services, provider: ChargebeeProvider) -> Check:
    from webhook_app.providers.chargebee import WEBHOOK_PATH

    settings = provider.settings
    public_url = svc.settings.links.public_url
    url = f"{public_url or 'https://<this app>'}{WEBHOOK_PATH}"
    missing = provider.missing_for_intake()
    if missing:
        return Check(
            "chargebee webhook",
            FAIL,
            f"{' and '.join(missing)} not set: every delivery is refused (503)",
            f"set both, then in {WEBHOOK_SETTINGS} add {url} with 'Protect webhook URL with basic "
            "authentication' on and the same username and password",
        )
    if len(settings.webhook_password or "") < MIN_PASSWORD_LENGTH:
        return Check(
            "chargebee webhook",
            WARN,
            f"basic auth is set but CHARGEBEE_WEBHOOK_PASSWORD is shorter than {MIN_PASSWORD_LENGTH} characters",
            "use a long random password (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
            f"here and in {WEBHOOK_SETTINGS}",
        )
    return Check("chargebee webhook", OK, f"basic auth set for {url}; events are confirmed through the API")


def _api(provider: ChargebeeProvider) -> Check:
    kind = "live" if provider.livemode else "test"
    if provider.client is None:
        return Check(
            "chargebee key",
            FAIL,
            f"{', '.join(provider.missing_for_sending())} is not usable: events cannot be confirmed nor invoices read",
            "set CHARGEBEE_SITE to the site name (e.g. acme, or acme-test for the test site) and "
            "CHARGEBEE_API_KEY to a full-access key of that site",
        )
    try:
        detail = provider.client.check_credentials()
    except ConfigurationNeeded as exc:
        return Check(
            "chargebee key",
            FAIL,
            str(exc),
            "set CHARGEBEE_API_KEY to an active key of CHARGEBEE_SITE (Settings > Configure Chargebee > API Keys)",
        )
    except RecoveryError as exc:
        return Check(
            "chargebee key", FAIL, f"could not reach Chargebee: {exc}", "check the network and CHARGEBEE_API_BASE"
        )
    return Check("chargebee key", OK, f"{detail} ({kind} site)")


def _own_dunning_emails() -> Check:
    # Chargebee's settings API does not expose its email notifications, so this cannot be read: it is a
    # standing reminder, shown as a warning so it is not mistaken for a verified setting.
    return Check(
        "chargebee emails",
        WARN,
        "Chargebee sends its own payment-failure and dunning emails unless they are off: customers would get two",
        f"turn off the dunning and payment-failure emails in {EMAIL_SETTINGS} (Chargebee's retries keep running)",
    )

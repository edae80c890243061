"""Braintree's doctor lines: the keys, the webhook, our update page, the environment, Braintree's own emails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webhook_app.errors import ConfigurationNeeded, RecoveryError
from webhook_app.ops.doctor import FAIL, OK, WARN, Check
from webhook_app.providers.braintree.translate import HANDLED_KINDS
from webhook_app.services import Services

if TYPE_CHECKING:
    from webhook_app.providers.braintree import BraintreeProvider

WEBHOOK_PATH = "/webhooks/braintree"
KEYS_FIX = "set BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY and BRAINTREE_PRIVATE_KEY from the Control Panel's API page"
# https://articles.braintreepayments.com/guides/recurring-billing/email-notifications
EMAILS_FIX = (
    "in the Control Panel, under Recurring Billing > Email Notifications, delete the notifications "
    "(First Decline, First Retry, Second Retry, Past Due) of the plans this app recovers"
)


def checks(svc: Services, provider: BraintreeProvider) -> list[Check]:
    """Braintree's lines, in the order an operator fixes things."""
    return [_keys(provider), _webhook(svc), _page(svc), *_environment(svc), _emails()]


def _keys(provider: BraintreeProvider) -> Check:
    if provider.problem:
        return Check(
            "braintree keys", FAIL, provider.problem, "correct the variable (see the README's Braintree section)"
        )
    missing = provider.missing_for_sending()
    if provider.client is None or missing:
        return Check("braintree keys", FAIL, f"{', '.join(missing)} not set", KEYS_FIX)
    try:
        return Check("braintree keys", OK, provider.client.check_credentials())
    except ConfigurationNeeded as exc:
        return Check("braintree keys", FAIL, str(exc), KEYS_FIX)
    except RecoveryError as exc:
        return Check(
            "braintree keys",
            FAIL,
            f"could not reach Braintree: {exc}",
            "check the network and BRAINTREE_API_BASE / BRAINTREE_ENVIRONMENT, then run doctor again",
        )


def _webhook(svc: Services) -> Check:
    public_url = svc.settings.links.public_url
    url = f"{public_url}{WEBHOOK_PATH}" if public_url else f"https://<this app>{WEBHOOK_PATH}"
    # Braintree's API cannot list webhook destinations: say what to set up rather than guess it is done.
    return Check(
        "braintree webhook",
        OK if public_url else WARN,
        f"deliveries to {url} are verified with the API key pair; Braintree cannot be asked which URL it calls",
        f"in the Control Panel (Settings > Webhooks) send {', '.join(HANDLED_KINDS)} to {url}",
    )


def _page(svc: Services) -> Check:
    links = svc.settings.links
    if not links.public_url:
        return Check(
            "braintree update page",
            FAIL,
            "PUBLIC_URL is not set: Braintree has no hosted page, so messages can only link to our "
            "/r/<token> -> /pay/braintree/<token> page, and are held until it is set",
            "set PUBLIC_URL to this app's public base URL (and SECRET_KEY)",
        )
    if not links.secret_key:
        return Check(
            "braintree update page",
            FAIL,
            "SECRET_KEY is not set: update pages are signed with the development secret",
            "set SECRET_KEY to a long random value",
        )
    return Check("braintree update page", OK, f"{links.public_url}/pay/braintree/<token> (Drop-in, minted per click)")


def _environment(svc: Services) -> list[Check]:
    settings = svc.settings
    braintree = settings.braintree
    lines = []
    if settings.is_production and braintree.environment == "sandbox":
        lines.append(
            Check(
                "braintree environment",
                WARN,
                "BRAINTREE_ENVIRONMENT is sandbox on a production deployment: no real card is charged",
                "set BRAINTREE_ENVIRONMENT=production with the production keys",
            )
        )
    if settings.is_production and braintree.api_base:
        lines.append(
            Check(
                "braintree environment",
                WARN,
                "BRAINTREE_API_BASE overrides Braintree's gateway on a production deployment",
                "unset BRAINTREE_API_BASE (it is for stand-ins in tests)",
            )
        )
    return lines


def _emails() -> Check:
    # Not readable through the API: always shown, so nobody reads silence as "off".
    return Check(
        "braintree emails",
        WARN,
        "Braintree can email customers itself when a subscription charge fails or goes past due; with those "
        "on, customers get two messages for one failure (this cannot be checked through the API)",
        EMAILS_FIX,
    )

"""Stripe's doctor lines: the webhook secret, the key, the webhook endpoint and the Billing Portal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webhook_app.errors import ConfigurationMissing, ConfigurationNeeded, RecoveryError, ResourceMissing
from webhook_app.ops.doctor import FAIL, OK, WARN, Check
from webhook_app.providers.stripe.admin import StripeAdminPort
from webhook_app.providers.stripe.endpoints import WEBHOOK_PATH, handled_event_types
from webhook_app.providers.stripe.portal import is_managed
from webhook_app.services import Services

if TYPE_CHECKING:
    from webhook_app.providers.stripe import StripeProvider

REGISTER_HINT = "webhook-app stripe register-endpoint --url {url}"


def checks(svc: Services, provider: StripeProvider) -> list[Check]:
    """Stripe's lines, in the order an operator fixes things."""
    settings = svc.settings.stripe
    checks: list[Check] = []
    if settings.webhook_secrets:
        checks.append(Check("webhook secret", OK, f"{len(settings.webhook_secrets)} signing secret(s) set"))
    else:
        checks.append(
            Check(
                "webhook secret",
                FAIL,
                "STRIPE_WEBHOOK_SECRET is not set: every delivery is refused (503)",
                "set it to the endpoint's whsec_ secret (`webhook-app stripe register-endpoint` prints it)",
            )
        )
    admin = provider.admin
    if not settings.secret_key or admin is None:
        checks.append(
            Check(
                "stripe key",
                FAIL,
                "STRIPE_SECRET_KEY is not set",
                "set it to a secret (sk_) or restricted (rk_) key from https://dashboard.stripe.com/apikeys",
            )
        )
        return checks + _not_checked("needs STRIPE_SECRET_KEY")

    key_mode = "live" if settings.livemode else "test"
    try:
        livemode = admin.account_livemode()
        checks.append(Check("stripe key", OK, f"valid, {'live' if livemode else 'test'} mode"))
    except ConfigurationNeeded as exc:
        if "(403)" in str(exc):
            # A restricted key without the balance permission still authenticated: it is valid.
            checks.append(Check("stripe key", OK, f"valid restricted key, {key_mode} mode (cannot read balance)"))
        else:
            checks.append(
                Check(
                    "stripe key",
                    FAIL,
                    str(exc),
                    "set STRIPE_SECRET_KEY to an active key from https://dashboard.stripe.com/apikeys",
                )
            )
            return checks + _not_checked("Stripe rejected the key")
    except RecoveryError as exc:
        checks.append(
            Check(
                "stripe key",
                FAIL,
                f"could not reach Stripe: {exc}",
                "check the network and STRIPE_API_BASE, then run doctor again",
            )
        )
        return checks + _not_checked("Stripe could not be reached")
    checks.append(_webhook_endpoint(svc, admin))
    checks.append(_portal(svc, admin))
    return checks


def _not_checked(why: str) -> list[Check]:
    # Not a problem of their own (the key line above is): shown so nobody reads silence as ✓.
    return [Check(name, WARN, f"not checked: {why}") for name in ("webhook endpoint", "billing portal")]


def _webhook_endpoint(svc: Services, admin: StripeAdminPort) -> Check:
    public_url = svc.settings.links.public_url
    expected_url = f"{public_url}{WEBHOOK_PATH}" if public_url else None
    fix = REGISTER_HINT.format(url=expected_url or f"https://<this app>{WEBHOOK_PATH}")
    try:
        endpoints = list(admin.list_webhook_endpoints())
    except RecoveryError as exc:
        return Check(
            "webhook endpoint",
            FAIL,
            f"could not list endpoints: {exc}",
            "give the key read access to Webhook Endpoints, or check in the Dashboard",
        )
    if expected_url:
        candidates = [e for e in endpoints if e.get("url") == expected_url]
        where = expected_url
    else:
        candidates = [e for e in endpoints if (e.get("url") or "").rstrip("/").endswith(WEBHOOK_PATH)]
        where = f"a URL ending in {WEBHOOK_PATH}"
    if not candidates:
        return Check("webhook endpoint", FAIL, f"no endpoint is registered for {where}", fix)
    needed = set(handled_event_types())
    enabled = [e for e in candidates if e.get("status", "enabled") == "enabled"]
    if not enabled:
        return Check("webhook endpoint", FAIL, f"{candidates[0]['id']} at {candidates[0].get('url')} is disabled", fix)
    for endpoint in enabled:
        events = set(endpoint.get("enabled_events") or ())
        if "*" in events or needed <= events:
            return Check(
                "webhook endpoint",
                OK,
                f"{endpoint['id']} at {endpoint.get('url')} receives the {len(needed)} handled event types",
            )
    endpoint = enabled[0]
    missing = sorted(needed - set(endpoint.get("enabled_events") or ()))
    return Check("webhook endpoint", FAIL, f"{endpoint['id']} is not subscribed to {', '.join(missing)}", fix)


def _portal(svc: Services, admin: StripeAdminPort) -> Check:
    configured = svc.settings.stripe.portal_configuration
    fix = "run `webhook-app portal setup` and set STRIPE_PORTAL_CONFIGURATION to the bpc_ id it prints"
    try:
        if configured:
            configuration = admin.retrieve_portal_configuration(configured)
            source = "STRIPE_PORTAL_CONFIGURATION"
        else:
            defaults = list(admin.list_portal_configurations(is_default=True))
            if not defaults:
                return Check(
                    "billing portal",
                    FAIL,
                    "no portal configuration: Stripe refuses portal sessions until one exists",
                    fix,
                )
            configuration = defaults[0]
            source = "the account default"
    except (ResourceMissing, ConfigurationMissing):
        return Check("billing portal", FAIL, f"{configured} does not exist in this mode", fix)
    except RecoveryError as exc:
        return Check("billing portal", FAIL, f"could not read the portal configuration: {exc}", fix)
    features = configuration.get("features") or {}
    if not configuration.get("active", True):
        return Check("billing portal", FAIL, f"{configuration['id']} ({source}) is inactive", fix)
    if not (features.get("payment_method_update") or {}).get("enabled"):
        return Check(
            "billing portal",
            FAIL,
            f"{configuration['id']} ({source}) does not let customers update their payment method",
            fix,
        )
    detail = f"{configuration['id']} ({source}) is active with payment method update"
    if not configured and not is_managed(configuration):
        return Check(
            "billing portal",
            WARN,
            detail + "; its Dashboard settings apply to recovery links",
            "run `webhook-app portal setup` to pin a recovery configuration",
        )
    return Check("billing portal", OK, detail)

"""`webhook-app portal setup`: the Billing Portal configuration recovery emails send customers to.

Portal sessions use the account's default configuration unless one is named, and a Stripe account
has none until someone saves the portal settings in the Dashboard ("No configuration provided and
your test mode default configuration has not been created"). This creates a configuration made for
recovery, payment method update on, cancellation off, and, run again, updates the one it made
(found by its metadata) instead of creating another.
https://docs.stripe.com/api/customer_portal/configurations/create
https://docs.stripe.com/customer-management/configure-portal
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from webhook_app.providers.stripe.admin import StripeAdminPort

MANAGED_BY = "webhook-app"
PURPOSE = "payment-recovery"
DEFAULT_HEADLINE = "Update your payment method"
NAME = "webhook-app payment recovery"
# Limits of POST /v1/billing_portal/configurations(/:id), from Stripe's OpenAPI spec
# (github.com/stripe/openapi): business_profile.headline maxLength 60, name maxLength 256.
# Refused here, before the request, rather than by Stripe after it.
HEADLINE_MAX = 60
NAME_MAX = 256


@dataclass(frozen=True)
class PortalOptions:
    """What the configuration enables; defaults suit a recovery email's one-click link."""

    payment_method_update: bool = True
    invoice_history: bool = True
    subscription_cancel: bool = False
    headline: str = DEFAULT_HEADLINE
    return_url: str | None = None


@dataclass(frozen=True)
class PortalResult:
    """The configuration set up, whether it was new, and other ones this app made (duplicates)."""

    configuration_id: str
    created: bool
    livemode: bool
    others: tuple[str, ...] = ()


def validate(options: PortalOptions) -> None:
    """Raise ValueError naming the option when Stripe would refuse a value (its documented limits)."""
    if len(options.headline) > HEADLINE_MAX:
        raise ValueError(
            f"--headline is {len(options.headline)} characters; Stripe allows at most {HEADLINE_MAX} "
            "(business_profile.headline)"
        )
    if options.return_url is not None:
        parts = urlparse(options.return_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("--return-url (or PORTAL_RETURN_URL) must be an absolute http(s) URL")


def is_managed(configuration: dict[str, Any]) -> bool:
    """True for a configuration `portal setup` made (its metadata says so)."""
    metadata = configuration.get("metadata") or {}
    return metadata.get("managed_by") == MANAGED_BY and metadata.get("purpose") == PURPOSE


def configuration_params(options: PortalOptions) -> dict[str, Any]:
    """The create/update parameters for `options`."""
    params: dict[str, Any] = {
        "name": NAME,
        "business_profile": {"headline": options.headline},
        "features": {
            "payment_method_update": {"enabled": options.payment_method_update},
            "invoice_history": {"enabled": options.invoice_history},
            "subscription_cancel": {"enabled": options.subscription_cancel},
        },
        "metadata": {"managed_by": MANAGED_BY, "purpose": PURPOSE},
    }
    if options.return_url:
        params["default_return_url"] = options.return_url
    return params


def setup_portal(admin: StripeAdminPort, options: PortalOptions) -> PortalResult:
    """Create the recovery portal configuration, or update the one made by an earlier run.

    Raises ValueError (before any request) for a value Stripe would refuse.
    """
    validate(options)
    ours = [c for c in admin.list_portal_configurations() if is_managed(c)]
    # Prefer an active one, then the newest: that is the one an earlier run printed last.
    ours.sort(key=lambda c: (bool(c.get("active")), c.get("created") or 0), reverse=True)
    params = configuration_params(options)
    if ours:
        target = ours[0]
        # An inactive configuration cannot mint sessions; reactivate the one we reuse.
        configuration = admin.update_portal_configuration(target["id"], {**params, "active": True})
        created = False
    else:
        configuration = admin.create_portal_configuration(params)
        created = True
    return PortalResult(
        configuration_id=configuration["id"],
        created=created,
        livemode=bool(configuration.get("livemode")),
        others=tuple(c["id"] for c in ours[1:]),
    )

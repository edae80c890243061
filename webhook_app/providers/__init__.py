"""The registry of billing providers: the one place that lists them.

Each provider is a package (`webhook_app/providers/<name>/`) exposing `build(settings, billing=None)`
that returns an object fulfilling `webhook_app.providers.base.Provider`. A provider is on when its
credentials are set; several may be on at once. Adding one: see docs/architecture.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhook_app.config import Settings
    from webhook_app.providers.base import Billing, Provider

# (provider, "invoice" | "customer", object id, livemode) -> the object's page in the provider's dashboard
DashboardLink = Callable[[str, str, str, bool], "str | None"]

# name -> module; the name is the URL segment (/webhooks/<name>), the `provider` column and --provider.
REGISTRY: dict[str, str] = {
    "stripe": "webhook_app.providers.stripe",
    "chargebee": "webhook_app.providers.chargebee",
    "recurly": "webhook_app.providers.recurly",
    "paddle": "webhook_app.providers.paddle",
    "braintree": "webhook_app.providers.braintree",
}


def dashboard_links(providers: Mapping[str, Provider]) -> DashboardLink:
    """Links into each provider's own dashboard (none for a provider the app no longer knows)."""

    def link(provider: str, kind: str, object_id: str, livemode: bool) -> str | None:
        known = providers.get(provider)
        return known.dashboard_url(kind, object_id, livemode) if known is not None else None

    return link


def names() -> tuple[str, ...]:
    """Every provider the app knows, in registry order."""
    return tuple(REGISTRY)


def build_providers(settings: Settings, billing: dict[str, Billing] | None = None) -> dict[str, Provider]:
    """Every known provider, built from its settings group (`billing` replaces runtime ports in tests)."""
    overrides = billing or {}
    built: dict[str, Provider] = {}
    for name, module in REGISTRY.items():
        package = importlib.import_module(module)
        built[name] = package.build(settings, billing=overrides.get(name))
    return built

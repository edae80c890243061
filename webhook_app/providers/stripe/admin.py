"""Stripe's admin port: what the operator commands (`portal setup`, `stripe register-endpoint`,
`events sync`, `doctor`) need, kept apart from the runtime port the worker and links use.

https://docs.stripe.com/api/pagination, /api/events/list, /api/customer_portal/configurations,
/api/webhook_endpoints, /api/balance/balance_retrieve
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from webhook_app.providers.stripe.client import StripeApi


@runtime_checkable
class StripeAdminPort(Protocol):
    """Account set-up and catch-up operations on a Stripe account."""

    def account_livemode(self) -> bool: ...

    def list_events(
        self, *, types: list[str], delivery_success: bool | None = None, created_gte: int | None = None
    ) -> Iterator[tuple[dict[str, Any], str]]: ...

    def list_portal_configurations(self, *, is_default: bool | None = None) -> Iterator[dict[str, Any]]: ...

    def retrieve_portal_configuration(self, configuration_id: str) -> dict[str, Any]: ...

    def create_portal_configuration(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def update_portal_configuration(self, configuration_id: str, params: dict[str, Any]) -> dict[str, Any]: ...

    def list_webhook_endpoints(self) -> Iterator[dict[str, Any]]: ...

    def create_webhook_endpoint(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def update_webhook_endpoint(self, endpoint_id: str, params: dict[str, Any]) -> dict[str, Any]: ...


class StripeAdmin:
    """`StripeAdminPort` over the Stripe API (sharing the runtime port's client and rate limit)."""

    def __init__(self, api: StripeApi):
        self.api = api

    def account_livemode(self) -> bool:
        """Check the key with `GET /v1/balance`; True when it is a live-mode key."""
        return bool(self.api.call(self.api.client.v1.balance.retrieve).livemode)

    def list_events(
        self, *, types: list[str], delivery_success: bool | None = None, created_gte: int | None = None
    ) -> Iterator[tuple[dict[str, Any], str]]:
        """Events of `types` (at most 20) from the last 30 days, as (envelope, raw JSON) pairs.

        `delivery_success=False` returns events still pending or failed for some webhook endpoint.
        """
        params: dict[str, Any] = {"types": list(types)}
        if delivery_success is not None:
            params["delivery_success"] = delivery_success
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        for event in self.api.pages(self.api.client.v1.events.list, params):
            data = event.to_dict()
            yield data, json.dumps(data, default=str)

    def list_portal_configurations(self, *, is_default: bool | None = None) -> Iterator[dict[str, Any]]:
        """Billing Portal configurations of this mode (all pages), as dicts."""
        params: dict[str, Any] = {} if is_default is None else {"is_default": is_default}
        for configuration in self.api.pages(self.api.client.v1.billing_portal.configurations.list, params):
            yield configuration.to_dict()

    def retrieve_portal_configuration(self, configuration_id: str) -> dict[str, Any]:
        """One Billing Portal configuration (`resource_missing` becomes ResourceMissing)."""
        return dict(
            self.api.call(self.api.client.v1.billing_portal.configurations.retrieve, configuration_id).to_dict()
        )

    def create_portal_configuration(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a Billing Portal configuration; returns it as a dict."""
        return dict(self.api.call(self.api.client.v1.billing_portal.configurations.create, params).to_dict())

    def update_portal_configuration(self, configuration_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Update a Billing Portal configuration; returns it as a dict."""
        configurations = self.api.client.v1.billing_portal.configurations
        return dict(self.api.call(configurations.update, configuration_id, params).to_dict())

    def list_webhook_endpoints(self) -> Iterator[dict[str, Any]]:
        """The account's webhook endpoints (all pages), as dicts; Stripe never lists their secrets."""
        for endpoint in self.api.pages(self.api.client.v1.webhook_endpoints.list, {}):
            yield endpoint.to_dict()

    def create_webhook_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create a webhook endpoint; the result carries `secret`, which Stripe returns only here."""
        return dict(self.api.call(self.api.client.v1.webhook_endpoints.create, params).to_dict())

    def update_webhook_endpoint(self, endpoint_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Update a webhook endpoint's url, enabled events, status or metadata."""
        return dict(self.api.call(self.api.client.v1.webhook_endpoints.update, endpoint_id, params).to_dict())

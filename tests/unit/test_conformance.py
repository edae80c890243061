"""Every implementation of our protocols, fakes included, matches the protocol it stands for.

`isinstance` with a runtime-checkable Protocol only checks that the names exist; here each method's
parameters (names, kinds, defaults present) are compared too, so a fake that drifted from the real port
fails here instead of passing tests against an interface the app no longer has.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tests.fakes import FakeBilling, RecordingMessenger
from webhook_app.adapters import Messenger
from webhook_app.adapters.console import ConsoleMessenger
from webhook_app.adapters.intercom import IntercomMessenger
from webhook_app.adapters.loops import LoopsMessenger
from webhook_app.config import load_settings
from webhook_app.providers import REGISTRY, build_providers
from webhook_app.providers.base import Billing, Provider
from webhook_app.providers.stripe.admin import StripeAdmin, StripeAdminPort
from webhook_app.providers.stripe.client import StripeApi

# Credentials for every billing provider the app knows, so each one builds its runtime port.
EVERY_PROVIDER = {
    "STRIPE_SECRET_KEY": "sk_test_conformance",
    "STRIPE_WEBHOOK_SECRET": "whsec_conformance",
    "CHARGEBEE_SITE": "acme-test",
    "CHARGEBEE_API_KEY": "test_conformance",
    "CHARGEBEE_WEBHOOK_USERNAME": "hook",
    "CHARGEBEE_WEBHOOK_PASSWORD": "hook-password",
    "RECURLY_API_KEY": "recurly-conformance",
    "RECURLY_WEBHOOK_SECRET": "recurly-secret",
    "RECURLY_SUBDOMAIN": "acme",
    "PADDLE_API_KEY": "pdl_sdbx_apikey_conformance",
    "PADDLE_WEBHOOK_SECRET": "pdl_ntfset_conformance",
    "PADDLE_CLIENT_TOKEN": "test_conformance",
    "PADDLE_ENVIRONMENT": "sandbox",
    "BRAINTREE_MERCHANT_ID": "merchant",
    "BRAINTREE_PUBLIC_KEY": "public",
    "BRAINTREE_PRIVATE_KEY": "private",
    "BRAINTREE_ENVIRONMENT": "sandbox",
    "PUBLIC_URL": "https://recover.example.test",
    "SECRET_KEY": "conformance",
}


def _members(protocol: type) -> dict[str, Any]:
    """The methods and properties a protocol declares (its own, not `object`'s or Protocol's)."""
    names = {n for n in vars(protocol) if not n.startswith("_")}
    names |= set(getattr(protocol, "__annotations__", {}))
    return {name: inspect.getattr_static(protocol, name, None) for name in sorted(names)}


def _shape(fn: Any) -> list[tuple[str, Any, bool]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # without self
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty) for p in params]


def assert_conforms(obj: object, protocol: type) -> None:
    """`obj` has every member of `protocol`, each method with the protocol's parameters."""
    for name, declared in _members(protocol).items():
        assert hasattr(obj, name), f"{type(obj).__name__} lacks {protocol.__name__}.{name}"
        if callable(declared) and not isinstance(declared, property):
            implemented = inspect.getattr_static(type(obj), name)
            assert _shape(implemented) == _shape(declared), (
                f"{type(obj).__name__}.{name}{inspect.signature(implemented)} does not match "
                f"{protocol.__name__}.{name}{inspect.signature(declared)}"
            )


SETTINGS = load_settings(EVERY_PROVIDER)
PROVIDERS = build_providers(SETTINGS)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_provider_fulfils_the_provider_protocol(name):
    provider = PROVIDERS[name]
    assert_conforms(provider, Provider)
    assert provider.name == name and provider.enabled


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_providers_runtime_port_fulfils_billing(name):
    billing = PROVIDERS[name].billing
    assert billing is not None, f"{name} built no runtime port from complete credentials"
    assert_conforms(billing, Billing)


def test_the_billing_fake_fulfils_billing():
    assert_conforms(FakeBilling(), Billing)


def test_stripe_admin_fulfils_its_admin_port():
    assert_conforms(StripeAdmin(StripeApi(SETTINGS.stripe)), StripeAdminPort)


@pytest.mark.parametrize(
    "messenger",
    [
        LoopsMessenger(SETTINGS.loops),
        IntercomMessenger(SETTINGS.intercom),
        ConsoleMessenger(),
        RecordingMessenger(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_messenger_and_its_fake_fulfil_messenger(messenger):
    assert_conforms(messenger, Messenger)


def test_a_drifted_method_is_caught():
    class Drifted(FakeBilling):
        def update_link(self, target, *, key=None):  # renamed keyword, missing for_email
            raise NotImplementedError

    with pytest.raises(AssertionError, match="update_link"):
        assert_conforms(Drifted(), Billing)

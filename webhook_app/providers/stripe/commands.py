"""Stripe's operator commands: `portal setup`, `stripe register-endpoint`, `events sync`.

Each prints a clear error and exits non-zero when it cannot do its job, and never prints a secret
(the one exception, by design: `stripe register-endpoint` shows a new endpoint's signing secret once,
because Stripe never returns it again).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from flask.cli import with_appcontext

from webhook_app.errors import RecoveryError
from webhook_app.ops.output import fail, needs_database
from webhook_app.providers.stripe.admin import StripeAdminPort
from webhook_app.services import Services, services

if TYPE_CHECKING:
    from webhook_app.providers.stripe import StripeProvider

portal_group = click.Group("portal", help="The Stripe Billing Portal configuration recovery links open.")
stripe_group = click.Group("stripe", help="Stripe account set-up.")


def _stripe(svc: Services) -> StripeProvider:
    from webhook_app.providers.stripe import StripeProvider

    provider = svc.provider("stripe")
    assert isinstance(provider, StripeProvider)
    return provider


def _admin(svc: Services) -> StripeAdminPort:
    admin = _stripe(svc).admin
    if admin is None:
        raise fail(
            svc,
            "STRIPE_SECRET_KEY is not set (a secret sk_ or restricted rk_ key from https://dashboard.stripe.com/apikeys)",
        )
    return admin


def _mode(svc: Services) -> str:
    livemode = svc.settings.stripe.livemode
    return "unknown mode" if livemode is None else "live mode" if livemode else "test mode"


@portal_group.command("setup")
@click.option(
    "--payment-method-update/--no-payment-method-update",
    default=True,
    show_default=True,
    help="Let customers update their payment method (what recovery links are for).",
)
@click.option(
    "--invoice-history/--no-invoice-history",
    default=True,
    show_default=True,
    help="Show past invoices, so customers can check what they owe.",
)
@click.option(
    "--subscription-cancel/--no-subscription-cancel",
    default=False,
    show_default=True,
    help="Offer cancellation in the portal a recovery email opens.",
)
@click.option(
    "--headline",
    default="Update your payment method",
    show_default=True,
    help="business_profile.headline shown at the top of the portal.",
)
@click.option("--return-url", help="default_return_url (default: PORTAL_RETURN_URL).")
@with_appcontext
def portal_setup(
    payment_method_update: bool, invoice_history: bool, subscription_cancel: bool, headline: str, return_url: str | None
) -> None:
    """Create, or update on later runs, the Billing Portal configuration for recovery links."""
    from webhook_app.providers.stripe.portal import PortalOptions, setup_portal, validate

    svc = services()
    options = PortalOptions(
        payment_method_update=payment_method_update,
        invoice_history=invoice_history,
        subscription_cancel=subscription_cancel,
        headline=headline,
        return_url=return_url or svc.settings.links.return_url,
    )
    try:
        validate(options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    admin = _admin(svc)
    try:
        result = setup_portal(admin, options)
    except RecoveryError as exc:
        raise fail(svc, f"portal setup failed: {exc}") from None
    verb = "created" if result.created else "updated"
    mode = "live" if result.livemode else "test"
    click.echo(f"{verb} Billing Portal configuration {result.configuration_id} ({mode} mode)")
    click.echo(
        f"  payment method update: {'on' if payment_method_update else 'off'}, "
        f"invoice history: {'on' if invoice_history else 'off'}, "
        f"subscription cancel: {'on' if subscription_cancel else 'off'}"
    )
    if not options.return_url:
        click.echo("  no default_return_url: set PORTAL_RETURN_URL (or --return-url) to give customers a way back")
    for other in result.others:
        click.echo(f"  note: {other} was also made by webhook-app; it is no longer used", err=True)
    if svc.settings.stripe.portal_configuration == result.configuration_id:
        click.echo("STRIPE_PORTAL_CONFIGURATION already names it.")
    else:
        click.echo(f"Set STRIPE_PORTAL_CONFIGURATION={result.configuration_id}")


@stripe_group.command("register-endpoint")
@click.option("--url", required=True, help="This app's webhook URL, e.g. https://<app>/webhooks/stripe")
@click.option("--api-version", help="Payload version for a new endpoint (default: the Stripe SDK's).")
@with_appcontext
def register_endpoint_command(url: str, api_version: str | None) -> None:
    """Create (or update) the webhook endpoint for exactly the event types the app handles."""
    from webhook_app.providers.stripe.endpoints import register_endpoint, validate_api_version, validate_url

    svc = services()
    try:
        for warning in validate_url(url):
            click.echo(f"warning: {warning}", err=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    try:
        validate_api_version(api_version)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--api-version") from None
    admin = _admin(svc)
    try:
        result = register_endpoint(admin, url, api_version)
    except RecoveryError as exc:
        raise fail(svc, f"could not register the endpoint: {exc}") from None
    click.echo(
        f"{'created' if result.created else 'updated'} webhook endpoint {result.endpoint_id} "
        f"({_mode(svc)}) for {result.url}"
    )
    click.echo(f"  events: {', '.join(result.enabled_events)}")
    if result.api_version:
        click.echo(f"  payload API version: {result.api_version}")
    for other in result.others:
        click.echo(
            f"  note: {other} (another URL) was also registered by webhook-app; "
            "delete it in the Dashboard if it is no longer used",
            err=True,
        )
    if result.created and result.secret:
        # Stripe returns the signing secret in the create response only: this is the one chance.
        click.echo(f"Signing secret (shown once): {result.secret}")
        click.echo("Set STRIPE_WEBHOOK_SECRET to it (comma-separate it from the old one while rotating).")
    else:
        click.echo(
            "The signing secret is unchanged (Stripe shows it only at creation); STRIPE_WEBHOOK_SECRET stays as it is."
        )


@click.command("sync")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Also fetch every handled event created since this UTC date (Stripe keeps 30 days).",
)
@with_appcontext
@needs_database
def events_sync(since: datetime | None) -> None:
    """Insert events Stripe failed to deliver (and, with --since, all handled ones) missing from the inbox."""
    from webhook_app.providers.stripe.sync import RETENTION, sync_events

    svc = services()
    _admin(svc)
    if since is not None:
        oldest = datetime.now(UTC).replace(tzinfo=None) - RETENTION
        if since < oldest:
            click.echo(
                f"warning: Stripe lists events of the last 30 days only; events before {oldest:%Y-%m-%d} "
                "cannot be recovered this way",
                err=True,
            )
    try:
        result = sync_events(svc, since)
    except RecoveryError as exc:
        raise fail(svc, f"events sync failed: {exc}") from None
    click.echo(
        f"listed {result.listed} event(s) from Stripe: {result.inserted} missing and now queued, "
        f"{result.already_stored} already in the inbox"
        + (f", {result.ignored} stored as ignored (other mode)" if result.ignored else "")
    )
    for problem in result.malformed:
        click.echo(f"skipped malformed event {problem}", err=True)
    if result.inserted:
        click.echo("the worker processes them now (run `webhook-app worker --once` if no worker is running)")


def register(cli: click.Group) -> None:
    """Attach Stripe's commands (`events sync` joins the core's `events` group)."""
    cli.add_command(portal_group)
    cli.add_command(stripe_group)
    events = cli.commands.get("events")
    if isinstance(events, click.Group):
        events.add_command(events_sync)

"""The operator commands: `portal setup`, `doctor`, `stripe register-endpoint`, `campaign`, `events sync`.

Each prints a clear error and exits non-zero when it cannot do its job, and never prints a secret
(the one exception, by design: `stripe register-endpoint` shows a new endpoint's signing secret once,
because Stripe never returns it again).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click
from flask.cli import with_appcontext

from webhook_app.errors import RecoveryError
from webhook_app.observability import scrub
from webhook_app.services import Services, services

portal_group = click.Group("portal", help="The Stripe Billing Portal configuration recovery links open.")
stripe_group = click.Group("stripe", help="Stripe account set-up.")


def _scrub(svc: Services, text: str) -> str:
    """`text` without any configured secret (provider error texts can echo what they were sent)."""
    s = svc.settings
    secrets = tuple(
        v
        for v in (
            s.stripe_secret_key,
            s.loops_api_key,
            s.intercom_access_token,
            s.secret_key,
            *s.stripe_webhook_secrets,
        )
        if v
    )
    return scrub(text, secrets)


def _fail(svc: Services, message: str) -> click.ClickException:
    """A ClickException (exit 1) whose text is scrubbed of every configured secret."""
    return click.ClickException(_scrub(svc, message))


def _billing(svc: Services):
    if svc.billing is None:
        raise _fail(
            svc,
            "STRIPE_SECRET_KEY is not set (a secret sk_ or restricted rk_ key from "
            "https://dashboard.stripe.com/apikeys)",
        )
    return svc.billing


def _mode(svc: Services) -> str:
    return {True: "live mode", False: "test mode"}.get(svc.settings.stripe_livemode, "unknown mode")


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
    from webhook_app.ops.portal import PortalOptions, setup_portal

    svc = services()
    billing = _billing(svc)
    options = PortalOptions(
        payment_method_update=payment_method_update,
        invoice_history=invoice_history,
        subscription_cancel=subscription_cancel,
        headline=headline,
        return_url=return_url or svc.settings.portal_return_url,
    )
    try:
        result = setup_portal(billing, options)
    except RecoveryError as exc:
        raise _fail(svc, f"portal setup failed: {exc}") from None
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
    if svc.settings.stripe_portal_configuration == result.configuration_id:
        click.echo("STRIPE_PORTAL_CONFIGURATION already names it.")
    else:
        click.echo(f"Set STRIPE_PORTAL_CONFIGURATION={result.configuration_id}")


@click.command("doctor")
@with_appcontext
def doctor_command() -> None:
    """Check every setting and external system; print ✓/✗ with the fix for each ✗ (exit 1 if any)."""
    from webhook_app.ops.doctor import FAIL, render, run_checks

    checks = run_checks(services())
    click.echo(render(checks))
    failed = sum(c.status == FAIL for c in checks)
    if failed:
        click.echo(f"\n{failed} problem(s) to fix", err=True)
        sys.exit(1)
    click.echo("\neverything needed is in place")


@stripe_group.command("register-endpoint")
@click.option("--url", required=True, help="This app's webhook URL, e.g. https://<app>/webhooks/stripe")
@click.option("--api-version", help="Payload version for a new endpoint (default: the Stripe SDK's).")
@with_appcontext
def register_endpoint_command(url: str, api_version: str | None) -> None:
    """Create (or update) the webhook endpoint for exactly the event types the app handles."""
    from webhook_app.ops.endpoints import register_endpoint, validate_url

    svc = services()
    billing = _billing(svc)
    try:
        for warning in validate_url(url):
            click.echo(f"warning: {warning}", err=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    try:
        result = register_endpoint(billing, url, api_version)
    except RecoveryError as exc:
        raise _fail(svc, f"could not register the endpoint: {exc}") from None
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


@click.command("campaign")
@click.option("--dry-run", is_flag=True, help="Print who would get which message; send nothing, write nothing.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write customer_id, invoice_id, update_url, amount_due, currency to this file instead of sending.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Message at most N customers this run.")
@click.option(
    "--cooldown-days",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Skip customers messaged (by a campaign or the worker) within this many days.",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Customers handled at once."
)
@click.option(
    "--stripe-rate",
    type=click.FloatRange(min=0.1),
    help="Stripe requests per second [default: 20 in test mode, 80 live].",
)
@click.option(
    "--messenger-rate",
    type=click.FloatRange(min=0.1),
    help="Email tool requests per second [default: LOOPS_RATE_PER_SECOND, 10].",
)
@with_appcontext
def campaign_command(
    dry_run: bool,
    csv_path: str | None,
    limit: int | None,
    cooldown_days: float,
    concurrency: int,
    stripe_rate: float | None,
    messenger_rate: float | None,
) -> None:
    """Message every customer with open, failed invoices once (resumable; see the README)."""
    from webhook_app.ops.campaign import CampaignOptions, run_campaign

    svc = services()
    _billing(svc)
    if dry_run and csv_path:
        raise click.UsageError("--dry-run and --csv are alternatives: pick one")
    options = CampaignOptions(
        dry_run=dry_run,
        csv_path=csv_path,
        limit=limit,
        cooldown=timedelta(days=cooldown_days),
        concurrency=concurrency,
        stripe_rate=stripe_rate,
        messenger_rate=messenger_rate or svc.settings.loops_rate_per_second,
    )
    if not dry_run and not csv_path:
        click.echo(f"campaign: messaging customers through {svc.messenger.name} ({_mode(svc)})", err=True)
    try:
        report = run_campaign(svc, options, echo=click.echo, progress_stream=sys.stderr)
    except OSError as exc:
        raise _fail(svc, f"cannot write {csv_path}: {exc.strerror}") from None
    except RecoveryError as exc:
        raise _fail(svc, f"campaign stopped before messaging anyone: {exc}") from None
    for line in report.summary():
        click.echo(_scrub(svc, line))
    if report.stopped:
        sys.exit(1)


@click.command("sync")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Also fetch every handled event created since this UTC date (Stripe keeps 30 days).",
)
@with_appcontext
def events_sync(since: datetime | None) -> None:
    """Insert events Stripe failed to deliver (and, with --since, all handled ones) missing from the inbox."""
    from webhook_app.ops.sync import RETENTION, sync_events

    svc = services()
    _billing(svc)
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
        raise _fail(svc, f"events sync failed: {exc}") from None
    click.echo(
        f"listed {result.listed} event(s) from Stripe: {result.inserted} missing and now queued, "
        f"{result.already_stored} already in the inbox"
        + (f", {result.ignored} stored as ignored (other mode)" if result.ignored else "")
    )
    for problem in result.malformed:
        click.echo(f"skipped malformed event {problem}", err=True)
    if result.inserted:
        click.echo("the worker processes them now (run `webhook-app worker --once` if no worker is running)")


def register(cli: click.Group, events_group: click.Group) -> None:
    """Attach the operator commands to the app's CLI (`events sync` joins the existing `events` group)."""
    cli.add_command(portal_group)
    cli.add_command(stripe_group)
    cli.add_command(doctor_command)
    cli.add_command(campaign_command)
    events_group.add_command(events_sync)

"""`webhook-app doctor`: check each setting and each external system, with the fix for what fails.

Every check returns a line: ✓ (fine), ✗ (broken: the fix says what to do) or ! (works, but something
an operator probably wants to change). Nothing here changes anything, and no detail ever shows a
secret: texts from providers are scrubbed of the configured keys before they are printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from webhook_app import migrate
from webhook_app.errors import ConfigurationNeeded, CustomerMissing, RecoveryError
from webhook_app.observability import scrub
from webhook_app.ops.endpoints import WEBHOOK_PATH, handled_event_types
from webhook_app.ops.portal import is_managed
from webhook_app.services import Services

OK, FAIL, WARN = "ok", "fail", "warn"
MARKS = {OK: "✓", FAIL: "✗", WARN: "!"}
REGISTER_HINT = "webhook-app stripe register-endpoint --url {url}"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    @property
    def mark(self) -> str:
        return MARKS[self.status]


def run_checks(svc: Services) -> list[Check]:
    """Every check, in the order an operator fixes things."""
    secrets = _secrets(svc)
    checks = [*_settings(svc), _database(svc), *_stripe(svc), _messenger(svc), *_links(svc)]
    # Provider texts may echo what we sent them: never let a key through to the terminal.
    return [Check(c.name, c.status, scrub(c.detail, secrets), scrub(c.fix, secrets) if c.fix else None) for c in checks]


def _secrets(svc: Services) -> tuple[str, ...]:
    s = svc.settings
    values = (
        s.stripe_secret_key,
        s.loops_api_key,
        s.intercom_access_token,
        s.secret_key,
        s.finance_password,
        *s.stripe_webhook_secrets,
    )
    return tuple(v for v in values if v)


def render(checks: list[Check]) -> str:
    """The table: mark, name, detail, and an indented fix under each ✗ or !."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.mark} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"  {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def _settings(svc: Services) -> list[Check]:
    problems = svc.settings.problems
    if not problems:
        return [Check("environment", OK, "every variable is well-formed")]
    return [
        Check("environment", FAIL, problem, "correct the variable (see the README's environment table)")
        for problem in problems
    ]


def _database(svc: Services) -> Check:
    try:
        pending = migrate.pending_revisions(svc.db)
    except SQLAlchemyError as exc:
        return Check(
            "database",
            FAIL,
            f"unreachable ({exc.__class__.__name__})",
            "check DATABASE_URL and that the database server is up",
        )
    if pending:
        return Check(
            "database",
            FAIL,
            f"reachable ({svc.db.dialect}) but not migrated: {', '.join(pending)} pending",
            "run `webhook-app db upgrade`",
        )
    return Check("database", OK, f"reachable ({svc.db.dialect}), schema current")


def _stripe(svc: Services) -> list[Check]:
    settings = svc.settings
    checks: list[Check] = []
    if settings.stripe_webhook_secrets:
        checks.append(Check("webhook secret", OK, f"{len(settings.stripe_webhook_secrets)} signing secret(s) set"))
    else:
        checks.append(
            Check(
                "webhook secret",
                FAIL,
                "STRIPE_WEBHOOK_SECRET is not set: every delivery is refused (503)",
                "set it to the endpoint's whsec_ secret (`webhook-app stripe register-endpoint` prints it)",
            )
        )
    if not settings.stripe_secret_key or svc.billing is None:
        checks.append(
            Check(
                "stripe key",
                FAIL,
                "STRIPE_SECRET_KEY is not set",
                "set it to a secret (sk_) or restricted (rk_) key from https://dashboard.stripe.com/apikeys",
            )
        )
        return checks + _not_checked("needs STRIPE_SECRET_KEY")

    key_mode = "live" if settings.stripe_livemode else "test"
    try:
        livemode = svc.billing.account_livemode()
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
        return checks
    checks.append(_webhook_endpoint(svc))
    checks.append(_portal(svc))
    return checks


def _not_checked(why: str) -> list[Check]:
    # Not a problem of their own (the key line above is): shown so nobody reads silence as ✓.
    return [Check(name, WARN, f"not checked: {why}") for name in ("webhook endpoint", "billing portal")]


def _webhook_endpoint(svc: Services) -> Check:
    public_url = svc.settings.public_url
    expected_url = f"{public_url}{WEBHOOK_PATH}" if public_url else None
    fix = REGISTER_HINT.format(url=expected_url or f"https://<this app>{WEBHOOK_PATH}")
    try:
        endpoints = list(svc.billing.list_webhook_endpoints())
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


def _portal(svc: Services) -> Check:
    configured = svc.settings.stripe_portal_configuration
    fix = "run `webhook-app portal setup` and set STRIPE_PORTAL_CONFIGURATION to the bpc_ id it prints"
    try:
        if configured:
            configuration = svc.billing.retrieve_portal_configuration(configured)
            source = "STRIPE_PORTAL_CONFIGURATION"
        else:
            defaults = list(svc.billing.list_portal_configurations(is_default=True))
            if not defaults:
                return Check(
                    "billing portal",
                    FAIL,
                    "no portal configuration: Stripe refuses portal sessions until one exists",
                    fix,
                )
            configuration = defaults[0]
            source = "the account default"
    except CustomerMissing:
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


def _messenger(svc: Services) -> Check:
    settings = svc.settings
    provider = settings.messaging_provider
    if provider == "console":
        status = FAIL if settings.is_production else WARN
        return Check(
            "messenger",
            status,
            "console: messages are logged, nobody is emailed",
            "set MESSAGING_PROVIDER=loops (LOOPS_API_KEY) or intercom (INTERCOM_ACCESS_TOKEN)",
        )
    fixes = {
        "loops": "set LOOPS_API_KEY to a key from Loops' Settings > API (checked with GET /v1/api-key)",
        "intercom": "set INTERCOM_ACCESS_TOKEN (and INTERCOM_API_BASE for EU/AU workspaces); checked with GET /me",
    }
    try:
        return Check("messenger", OK, svc.messenger.check())
    except RecoveryError as exc:
        return Check("messenger", FAIL, f"{provider}: {exc}", fixes.get(provider))


def _links(svc: Services) -> list[Check]:
    settings = svc.settings
    checks = []
    if not settings.public_url:
        checks.append(
            Check(
                "recovery links",
                WARN,
                "PUBLIC_URL is not set: emails carry raw portal session URLs, which expire",
                "set PUBLIC_URL to this app's public base URL so emails carry durable /r/<token> links",
            )
        )
    elif not settings.secret_key:
        checks.append(
            Check(
                "recovery links",
                FAIL,
                "PUBLIC_URL is set but SECRET_KEY is not: links are signed with the development secret",
                "set SECRET_KEY to a long random value, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        )
    else:
        checks.append(Check("recovery links", OK, f"{settings.public_url}/r/<token>, signed with SECRET_KEY"))
    if not settings.portal_return_url:
        checks.append(
            Check(
                "portal return url",
                WARN,
                "PORTAL_RETURN_URL is not set: the portal has no way back",
                "set PORTAL_RETURN_URL to your app's billing page",
            )
        )
    return checks

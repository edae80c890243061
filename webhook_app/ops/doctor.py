"""`webhook-app doctor`: check each setting and each external system, with the fix for what fails.

Every check returns a line: ✓ (fine), ✗ (broken: the fix says what to do) or ! (works, but something
an operator probably wants to change). Nothing here changes anything, and no detail ever shows a
secret: texts from providers are scrubbed of the configured keys before they are printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from webhook_app import migrate
from webhook_app.errors import RecoveryError
from webhook_app.observability import scrub
from webhook_app.services import Services

OK, FAIL, WARN = "ok", "fail", "warn"
MARKS = {OK: "✓", FAIL: "✗", WARN: "!"}


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
    secrets = svc.settings.secrets()
    checks = [*_settings(svc), _database(svc), *_providers(svc), _messenger(svc), *_alerts(svc), *_links(svc)]
    # Provider texts may echo what we sent them: never let a key through to the terminal.
    return [Check(c.name, c.status, scrub(c.detail, secrets), scrub(c.fix, secrets) if c.fix else None) for c in checks]


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


def _providers(svc: Services) -> list[Check]:
    """Each enabled billing provider's own lines; a line saying none is set up otherwise."""
    enabled = svc.enabled_providers()
    if not enabled:
        names = ", ".join(p.label for p in svc.providers.values())
        return [
            Check(
                "billing provider",
                FAIL,
                f"none is set up ({names})",
                "set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (or another provider's credentials, see the README)",
            )
        ]
    return [check for provider in enabled for check in provider.doctor(svc)]


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


def _alerts(svc: Services) -> list[Check]:
    """Team alerts: each configured channel, checked without alerting anyone."""
    if not svc.alerters:
        return [
            Check(
                "team alerts",
                WARN,
                "off: nobody hears of large failures, fraud-flagged declines or final notices",
                "set ALERT_SLACK_WEBHOOK_URL and/or ALERT_EMAIL (and ALERT_MIN_AMOUNT, ALERT_DIGEST_HOUR)",
            )
        ]
    checks = []
    for channel, alerter in sorted(svc.alerters.items()):
        try:
            checks.append(Check(f"team alerts ({channel})", OK, alerter.check()))
        except RecoveryError as exc:
            checks.append(Check(f"team alerts ({channel})", FAIL, str(exc), "see the README's Team alerts section"))
    if channel_needs_loops(svc):
        checks.append(
            Check(
                "team alerts (email)",
                FAIL,
                f"ALERT_EMAIL is set but alert emails need MESSAGING_PROVIDER=loops (now {svc.messenger.name})",
                "use ALERT_SLACK_WEBHOOK_URL, or send through Loops",
            )
        )
    return checks


def channel_needs_loops(svc: Services) -> bool:
    """ALERT_EMAIL goes through the messenger; only Loops (and the console) can email the team."""
    return "email" in svc.alerters and svc.messenger.name not in ("loops", "console", "recording")


def _links(svc: Services) -> list[Check]:
    settings = svc.settings
    checks = []
    if not settings.links.public_url:
        checks.append(
            Check(
                "recovery links",
                WARN,
                "PUBLIC_URL is not set: emails carry raw portal session URLs, which expire",
                "set PUBLIC_URL to this app's public base URL so emails carry durable /r/<token> links",
            )
        )
    elif not settings.links.secret_key:
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
        checks.append(Check("recovery links", OK, f"{settings.links.public_url}/r/<token>, signed with SECRET_KEY"))
    if not settings.links.return_url:
        checks.append(
            Check(
                "portal return url",
                WARN,
                "PORTAL_RETURN_URL is not set: the portal has no way back",
                "set PORTAL_RETURN_URL to your app's billing page",
            )
        )
    return checks

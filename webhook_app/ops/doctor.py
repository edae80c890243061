"""`webhook-app doctor`: check each setting and each external system, with the fix for what fails.

Every check returns a line: ✓ (fine), ✗ (broken: the fix says what to do) or ! (works, but something
an operator probably wants to change, or "not checked" with why). Doctor always runs, whatever is
broken, in production too; nothing here changes anything. Each problem is reported once: a later
line about a variable an earlier ✗/! line already named is dropped. No detail ever shows a secret
(texts from providers are scrubbed of the configured keys) and a provider's message is shown whole,
as text (an HTML error page is reduced to its title).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from webhook_app import migrate, readiness
from webhook_app.config import SMALLEST_PLAN_CONNECTIONS
from webhook_app.errors import RecoveryError
from webhook_app.observability import plain_text, scrub
from webhook_app.services import Services
from webhook_app.states import EventStatus, NotificationStatus

OK, FAIL, WARN = "ok", "fail", "warn"
MARKS = {OK: "✓", FAIL: "✗", WARN: "!"}
NOT_CHECKED = "not checked"
# An inbox event waiting longer than this means no worker is taking events.
STALE_EVENT = timedelta(minutes=5)
_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")


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


def not_checked(name: str, why: str) -> Check:
    """A check that could not run: said so (with why), never left out."""
    return Check(name, WARN, f"{NOT_CHECKED}: {why}")


def run_checks(svc: Services) -> list[Check]:
    """Every check, in the order an operator fixes things; each problem once."""
    database = _database(svc)
    db_ok = database.status == OK
    checks = [
        *_settings(svc),
        database,
        _connections(svc, db_ok),
        *_providers(svc),
        _messenger(svc),
        *_alerts(svc),
        *_links(svc),
        *_outbox(svc, db_ok),
        _inbox(svc, db_ok),
    ]
    checks.extend(_startup(svc, checks))
    return _once_each([_clean(svc, c) for c in checks])


def _clean(svc: Services, check: Check) -> Check:
    """Provider texts may echo what we sent them, or be an HTML page: no key, no markup, whole text."""
    secrets = svc.settings.secrets()
    return replace(
        check,
        detail=scrub(plain_text(check.detail, limit=1000), secrets),
        fix=scrub(check.fix, secrets) if check.fix else None,
    )


def _variables(check: Check) -> set[str]:
    return set(_VARIABLE.findall(check.detail))


def _once_each(checks: list[Check]) -> list[Check]:
    """Drop a ✗/! line whose variables were all named by an earlier ✗/! line (one problem, one line)."""
    named: set[str] = set()
    kept = []
    for check in checks:
        variables = _variables(check)
        problem = check.status != OK and not check.detail.startswith(NOT_CHECKED)
        if problem and variables and variables <= named:
            continue
        if problem:
            named |= variables
        kept.append(check)
    return kept


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
        return [Check("environment", OK, f"every variable is well-formed (APP_ENV={svc.settings.env})")]
    return [
        Check("environment", FAIL, problem, "correct the variable (see the README's environment table)")
        for problem in problems
    ]


def _database(svc: Services) -> Check:
    found = migrate.schema_problem(svc.db)
    if found is not None:
        return Check("database", FAIL, found.message, found.fix)
    return Check("database", OK, f"reachable ({svc.db.dialect} at {svc.db.where}), schema current")


def _connections(svc: Services, db_ok: bool) -> Check:
    """The PostgreSQL connection budget: web processes and one worker process, each with its pool."""
    settings = svc.settings
    if not svc.db.url:
        return not_checked("connections", "DATABASE_URL is malformed")
    if svc.db.dialect != "postgresql":
        return Check("connections", OK, f"{svc.db.dialect}: one file, no connection pool to size")
    per_process = settings.database.per_process
    web = settings.web.concurrency
    budget = per_process * (web + 1)  # one worker process: `webhook-app worker`, or the embedded one
    detail = (
        f"up to {budget}: {per_process} per process (DB_POOL_SIZE {settings.database.pool_size} + "
        f"DB_MAX_OVERFLOW {settings.database.max_overflow}) x ({web} web (WEB_CONCURRENCY) + 1 worker)"
    )
    limit, source = SMALLEST_PLAN_CONNECTIONS, "the smallest Heroku Postgres plan"
    if db_ok:
        try:
            with svc.db.engine.connect() as conn:
                limit = int(conn.execute(text("SHOW max_connections")).scalar_one())
                source = "this server's max_connections"
        except (SQLAlchemyError, ValueError):
            pass  # keep the plan's figure
    fix = "lower DB_POOL_SIZE / DB_MAX_OVERFLOW or WEB_CONCURRENCY (see the README's connection budget)"
    if budget > limit:
        return Check("connections", FAIL, f"{detail}; more than the {limit} of {source}", fix)
    if budget > limit - 3:
        return Check("connections", WARN, f"{detail}; leaves under 3 of {limit} ({source}) for one-off commands", fix)
    return Check("connections", OK, f"{detail}, of {limit} ({source})")


def _providers(svc: Services) -> list[Check]:
    """Each enabled billing provider's own lines; a line saying none is set up otherwise."""
    enabled = svc.enabled_providers()
    if not enabled:
        names = ", ".join(p.label for p in svc.providers.values())
        return [
            Check(
                "billing provider",
                FAIL,
                f"none is set up ({names}): every webhook is refused",
                "set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (or another provider's credentials, see the README)",
            )
        ]
    checks: list[Check] = []
    for provider in enabled:
        try:
            checks.extend(provider.doctor(svc))
        except RecoveryError as exc:  # a provider's own checks must not stop the others
            checks.append(Check(provider.name, FAIL, f"{provider.label} could not be checked: {exc}"))
    return checks


def _messenger(svc: Services) -> Check:
    settings = svc.settings
    provider = settings.messaging_provider
    if provider == "console":
        status = FAIL if settings.is_production else WARN
        return Check(
            "messenger",
            status,
            "MESSAGING_PROVIDER is console: messages are logged, nobody is emailed",
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
    secret_fix = (
        "set SECRET_KEY to a long random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    )
    if not settings.links.public_url:
        checks.append(
            Check(
                "recovery links",
                FAIL if settings.is_production else WARN,
                "PUBLIC_URL is not set: emails carry raw portal session URLs, which expire",
                "set PUBLIC_URL to this app's public base URL so emails carry durable /r/<token> links",
            )
        )
        if settings.is_production and not settings.links.secret_key:
            checks.append(Check("link signing", FAIL, "SECRET_KEY is not set", secret_fix))
    elif not settings.links.secret_key:
        checks.append(
            Check(
                "recovery links",
                FAIL,
                "PUBLIC_URL is set but SECRET_KEY is not: links are signed with the development secret",
                secret_fix,
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


def _outbox(svc: Services, db_ok: bool) -> list[Check]:
    """Messages that failed for good, and messages held until an operator acts."""
    if not db_ok:
        return [not_checked("messages", "the database is not usable (see above)")]
    from webhook_app.models import Notification

    with svc.db.session() as s:
        counts = dict(
            s.execute(
                select(Notification.status, func.count())
                .where(Notification.status.in_((NotificationStatus.FAILED, NotificationStatus.HELD)))
                .group_by(Notification.status)
            ).all()
        )
        held_reason = s.scalar(
            select(Notification.last_error)
            .where(Notification.status == NotificationStatus.HELD)
            .order_by(Notification.id.desc())
            .limit(1)
        )
    failed, held = counts.get(NotificationStatus.FAILED, 0), counts.get(NotificationStatus.HELD, 0)
    checks = []
    if held:
        checks.append(
            Check(
                "held messages",
                WARN,
                f"{held} message(s) wait for an operator; the latest: {held_reason or 'no reason stored'}",
                "fix the setting named there; held messages go out by themselves once it is fixed "
                "(`webhook-app notifications list --status held`)",
            )
        )
    if failed:
        checks.append(
            Check(
                "failed messages",
                WARN,
                f"{failed} message(s) failed for good and were not sent",
                "see why with `webhook-app notifications list --status failed`",
            )
        )
    if not checks:
        checks.append(Check("messages", OK, "no failed or held messages"))
    return checks


def _inbox(svc: Services, db_ok: bool) -> Check:
    """Events waiting to be processed (the oldest's age says whether a worker is running) and failed ones."""
    if not db_ok:
        return not_checked("inbox", "the database is not usable (see above)")
    from webhook_app.models import Event

    with svc.db.session() as s:
        oldest: datetime | None = s.scalar(
            select(func.min(Event.received_at)).where(Event.status.in_((EventStatus.PENDING, EventStatus.PROCESSING)))
        )
        waiting = s.scalar(
            select(func.count(Event.id)).where(Event.status.in_((EventStatus.PENDING, EventStatus.PROCESSING)))
        )
        failed = s.scalar(select(func.count(Event.id)).where(Event.status == EventStatus.FAILED))
    parts = []
    status = OK
    fix = None
    if oldest is not None:
        age = svc.clock.now() - oldest
        parts.append(f"{waiting} event(s) waiting, the oldest received {_age(age)} ago")
        if age > STALE_EVENT:
            status = WARN
            fix = "is a worker running? (WORKER_MODE=embedded in the web process, or `webhook-app worker`)"
    else:
        parts.append("no event waiting")
    if failed:
        status = WARN
        parts.append(f"{failed} failed")
        fix = (
            fix
            or "see why with `webhook-app events list --status failed`, fix, then `webhook-app events replay --failed`"
        )
    return Check("inbox", status, "; ".join(parts), fix)


def _age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d"


def _startup(svc: Services, checks: list[Check]) -> list[Check]:
    """Production: the essentials the web and worker processes refuse to start without, that no line
    above names already (a provider without its own doctor line, for one)."""
    if not svc.settings.is_production:
        return []
    named = {v for c in checks if c.status != OK for v in _variables(c)}
    missing = [
        p
        for p in readiness.configuration_problems(svc.settings, svc.providers.values())
        if not (set(_VARIABLE.findall(p.message)) <= named and _VARIABLE.findall(p.message))
        and p.subject not in ("billing provider",)
    ]
    return [Check("start-up", FAIL, p.message, p.fix) for p in missing]

"""The one place that reads the environment.

`load_settings()` turns a mapping (the environment, or a test's dict) into a validated, frozen
`Settings`. A missing or malformed value never raises here: it becomes a `problem` naming the
variable (never its value), so every command, `doctor` first, can still run and say what is wrong.
Whether a process may start with them is `webhook_app.readiness`'s decision: in production
(`APP_ENV=production`) the web and worker processes refuse to start until every essential is in place.

`.env` files are read with python-dotenv by `load_dotenv()` (Flask's convention: a variable already in
the environment wins), called by the `webhook-app` commands and by gunicorn's config.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MESSAGING_PROVIDERS = ("console", "loops", "intercom")
WORKER_MODES = ("embedded", "external")
PROVIDER_ENVIRONMENTS = ("sandbox", "production")
# Which message of a sequence this is; email tools may use a different template for each.
MESSAGE_TEMPLATES = ("first", "reminder", "final", "action_required")
# Per-class variants are allowed too (`first.insufficient_funds`); `alert` is the team alert email.
TEMPLATE_KEY = re.compile(r"^(first|reminder|final|action_required)(\.[a-z_]+)?$|^alert$")
DEFAULT_INTERCOM_BASE = "https://api.intercom.io"
DEFAULT_LOOPS_BASE = "https://app.loops.so/api"
DEFAULT_STRIPE_BASE = "https://api.stripe.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Connection budget: the smallest Heroku Postgres plan allows 20 connections. Two web processes
# (WEB_CONCURRENCY, Heroku's own default on its small dynos) plus one worker process, each with a
# pool of 4 + 1 overflow, use 15, leaving 5 for the release phase and one-off commands.
DEFAULT_WEB_CONCURRENCY = 2
# Intake threads mostly wait for the inbox write, and deliveries that wait together are written in one
# statement (inbox_writer.py): 8 threads acknowledged 0.7-0.8x the floor's rate on SQLite where 4 gave
# 0.55x (16: worse again, GIL hand-offs). Threads take no connection of their own from the pool.
DEFAULT_WEB_THREADS = 8
DEFAULT_DB_POOL_SIZE = 4
DEFAULT_DB_MAX_OVERFLOW = 1
DEFAULT_WORKER_CONCURRENCY = 24
SMALLEST_PLAN_CONNECTIONS = 20
DATABASE_SCHEMES = ("sqlite", "postgresql+psycopg")


@dataclass(frozen=True)
class StripeSettings:
    """Stripe: on when STRIPE_SECRET_KEY or STRIPE_WEBHOOK_SECRET is set."""

    secret_key: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    api_base: str = DEFAULT_STRIPE_BASE
    portal_configuration: str | None = None
    max_retries: int = 2
    timeout_seconds: float = 10.0
    # Requests per second for the key, all processes together; None: Stripe's 25 in test mode, 100 live.
    rate_per_second: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.secret_key or self.webhook_secrets)

    @property
    def livemode(self) -> bool | None:
        """True for a live key, False for a test key, None when no key is set."""
        key = self.secret_key or ""
        if "_live_" in key:
            return True
        if "_test_" in key:
            return False
        return None

    def secrets(self) -> tuple[str, ...]:
        return (*filter(None, (self.secret_key,)), *self.webhook_secrets)


@dataclass(frozen=True)
class ChargebeeSettings:
    """Chargebee (API v2): on when CHARGEBEE_SITE and CHARGEBEE_API_KEY are set."""

    site: str | None = None
    api_key: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None
    api_base: str | None = None  # full base URL override, e.g. http://127.0.0.1:8111/api/v2
    # Requests per second this process allows itself; None: 2.5 (150 a minute, the test-site limit).
    rate_per_second: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.site and self.api_key)

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.webhook_password) if v)


@dataclass(frozen=True)
class RecurlySettings:
    """Recurly (API v2021-02-25): on when RECURLY_API_KEY is set."""

    api_key: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    subdomain: str | None = None
    api_base: str | None = None
    collect_on_update: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def secrets(self) -> tuple[str, ...]:
        return (*filter(None, (self.api_key,)), *self.webhook_secrets)


@dataclass(frozen=True)
class PaddleSettings:
    """Paddle Billing: on when PADDLE_API_KEY is set."""

    api_key: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    client_token: str | None = None
    environment: str = "production"  # sandbox | production
    api_base: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def secrets(self) -> tuple[str, ...]:
        return (*filter(None, (self.api_key,)), *self.webhook_secrets)


@dataclass(frozen=True)
class BraintreeSettings:
    """Braintree: on when BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY and BRAINTREE_PRIVATE_KEY are set."""

    merchant_id: str | None = None
    public_key: str | None = None
    private_key: str | None = None
    environment: str = "production"  # sandbox | production
    api_base: str | None = None  # gateway base URL override, e.g. http://127.0.0.1:8222
    timeout_seconds: float = 10.0  # HTTP_TIMEOUT_SECONDS: our update page makes several calls per request

    @property
    def enabled(self) -> bool:
        return bool(self.merchant_id and self.public_key and self.private_key)

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.private_key,) if v)


@dataclass(frozen=True)
class LoopsSettings:
    """Loops, the email tool (`MESSAGING_PROVIDER=loops`)."""

    api_key: str | None = None
    transactional_id: str | None = None
    event_name: str = "paymentFailed"
    api_base: str = DEFAULT_LOOPS_BASE
    rate_per_second: float = 10.0
    timeout_seconds: float = 10.0
    # Per-message overrides (LOOPS_TRANSACTIONAL_IDS / LOOPS_EVENT_NAMES): first, reminder, final, ...
    transactional_ids: tuple[tuple[str, str], ...] = ()
    event_names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IntercomSettings:
    """Intercom, the email tool (`MESSAGING_PROVIDER=intercom`)."""

    access_token: str | None = None
    api_base: str = DEFAULT_INTERCOM_BASE
    event_name: str = "payment-failed"
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class WorkerSettings:
    """The worker: where it runs, how many sending threads, how it retries."""

    mode: str = "embedded"
    # Sending threads. Each send is three provider calls of ~100 ms and holds a connection only for its
    # short transactions, so 16 threads keep ~30 messages/s going on a pool of 5 connections.
    concurrency: int = DEFAULT_WORKER_CONCURRENCY
    poll_seconds: float = 1.0
    lease_seconds: int = 120
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 12
    # How often a worker process runs its upkeep: settled figures of recoveries, the retention sweep.
    upkeep_seconds: float = 60.0


@dataclass(frozen=True)
class DunningSettings:
    """When customers are messaged."""

    cadence_days: tuple[float, ...] = (0.0, 3.0, 7.0)
    final_notice_days: float | None = 13.0
    retry_attempts: int | None = None  # the billing system's retry count (STRIPE_RETRY_ATTEMPTS)
    quiet_hours: tuple[int, int] | None = None
    # The first message of a failure episode waits this long, so invoices of one customer that fail
    # together go out in one message (DUNNING_GROUP_WINDOW_SECONDS).
    group_window_seconds: float = 300.0


@dataclass(frozen=True)
class AlertSettings:
    """Team alerts: a Slack incoming webhook and/or an email through the configured messenger."""

    slack_webhook_url: str | None = None
    email: str | None = None
    min_amounts: tuple[tuple[str, int], ...] = ()  # per currency, minor units: ALERT_MIN_AMOUNT
    digest_hour: int | None = None  # UTC hour for yesterday's digest; None: no digest

    @property
    def enabled(self) -> bool:
        return bool(self.slack_webhook_url or self.email)

    def secrets(self) -> tuple[str, ...]:
        from webhook_app.adapters.slack import webhook_secrets

        return webhook_secrets(self.slack_webhook_url)


@dataclass(frozen=True)
class LinkSettings:
    """The durable recovery links and the customer-facing pages."""

    public_url: str | None = None
    secret_key: str | None = None
    max_age_days: int = 30
    company_name: str = "Our team"
    return_url: str | None = None  # PORTAL_RETURN_URL: where customers go back to after updating


@dataclass(frozen=True)
class FinanceSettings:
    """The finance pages' basic auth; both unset: the pages are off."""

    username: str | None = None
    password: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.username and self.password)


@dataclass(frozen=True)
class PrivacySettings:
    """How long personal data (customer names and emails) is kept once a case is closed."""

    pii_retention_days: int = 365


@dataclass(frozen=True)
class SentrySettings:
    dsn: str | None = None
    environment: str | None = None
    traces_sample_rate: float = 0.0


@dataclass(frozen=True)
class DatabaseSettings:
    """The PostgreSQL connection pool of each process (SQLite ignores it)."""

    pool_size: int = DEFAULT_DB_POOL_SIZE
    max_overflow: int = DEFAULT_DB_MAX_OVERFLOW

    @property
    def per_process(self) -> int:
        """The most connections one process opens."""
        return self.pool_size + self.max_overflow


@dataclass(frozen=True)
class WebSettings:
    """The gunicorn web processes (gunicorn.conf.py reads these)."""

    concurrency: int = DEFAULT_WEB_CONCURRENCY  # WEB_CONCURRENCY: processes
    threads: int = DEFAULT_WEB_THREADS  # GUNICORN_THREADS: threads per process


@dataclass(frozen=True)
class Settings:
    """Validated configuration, one group per concern. Build it with `load_settings`."""

    env: str = "development"
    database_url: str = ""
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    web: WebSettings = field(default_factory=WebSettings)
    log_level: str = "INFO"
    max_body_bytes: int = 512 * 1024
    webhook_tolerance_seconds: int = 300
    messaging_provider: str = "console"
    stripe: StripeSettings = field(default_factory=StripeSettings)
    chargebee: ChargebeeSettings = field(default_factory=ChargebeeSettings)
    recurly: RecurlySettings = field(default_factory=RecurlySettings)
    paddle: PaddleSettings = field(default_factory=PaddleSettings)
    braintree: BraintreeSettings = field(default_factory=BraintreeSettings)
    loops: LoopsSettings = field(default_factory=LoopsSettings)
    intercom: IntercomSettings = field(default_factory=IntercomSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    dunning: DunningSettings = field(default_factory=DunningSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    links: LinkSettings = field(default_factory=LinkSettings)
    finance: FinanceSettings = field(default_factory=FinanceSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    sentry: SentrySettings = field(default_factory=SentrySettings)
    problems: tuple[str, ...] = field(default=())

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret: masked in logs, Sentry events, `doctor` and every CLI output."""
        values = (
            *self.stripe.secrets(),
            *self.chargebee.secrets(),
            *self.recurly.secrets(),
            *self.paddle.secrets(),
            *self.braintree.secrets(),
            *self.alerts.secrets(),
            self.loops.api_key,
            self.intercom.access_token,
            self.links.secret_key,
            self.finance.password,
            # A `settings` repr (Sentry frame locals) carries DATABASE_URL with its password.
            urlsplit(self.database_url).password if self.database_url else None,
        )
        return tuple(v for v in values if v)

    def missing_for_sending(self) -> list[str]:
        """Variables the chosen email tool needs before the worker can message customers."""
        if self.messaging_provider == "loops" and not self.loops.api_key:
            return ["LOOPS_API_KEY"]
        if self.messaging_provider == "intercom" and not self.intercom.access_token:
            return ["INTERCOM_ACCESS_TOKEN"]
        return []


def instance_dir() -> Path:
    """Where the default SQLite database lives, whatever the current directory.

    A source checkout (`make run`, an editable install): `instance/` next to the package, at the top
    of the checkout. An installed package: `<venv>/var/webhook_app-instance`, Flask's own convention
    for an app's instance folder.
    """
    package = Path(__file__).resolve().parent
    if {"site-packages", "dist-packages"} & set(package.parts):
        return Path(sys.prefix) / "var" / "webhook_app-instance"
    return package.parent / "instance"


def default_database_url() -> str:
    """The SQLite database used when DATABASE_URL is not set."""
    return f"sqlite:///{instance_dir() / 'webhook_app.sqlite3'}"


def load_dotenv() -> bool:
    """Read `.env` (and `.flaskenv`) into the environment, as Flask's CLI does; True if any was read.

    python-dotenv looks in the current directory and its parents; variables already set win, and
    `FLASK_SKIP_DOTENV=1` turns it off (tests set it so a developer's .env cannot leak in).
    """
    from flask.cli import load_dotenv as flask_load_dotenv
    from flask.helpers import get_load_dotenv

    if not get_load_dotenv():
        return False
    return flask_load_dotenv()


def normalize_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` and pick the psycopg 3 driver for PostgreSQL URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class _Reader:
    """Reads typed values from a mapping, collecting problems instead of raising."""

    def __init__(self, source: Mapping[str, object]):
        self.source = source
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.source.get(name)
        if value is None:
            return default
        value = str(value).strip()
        return value or default

    def number(self, name: str, default: float, kind: Callable[[str], float] = float, minimum: float = 0) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name} must be a {getattr(kind, '__name__', 'number')}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}")
            return default
        return float(value)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.text(name) or default).lower()
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}")
            return default
        return value

    def days(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            values = tuple(sorted(float(part) for part in raw.split(",") if part.strip()))
        except ValueError:
            values = ()
        if not values or values[0] < 0:
            self.problems.append(f"{name} must be a comma-separated list of days, e.g. 0,3,7")
            return default
        return values

    def hours(self, name: str) -> tuple[int, int] | None:
        raw = self.text(name)
        if raw is None or raw.lower() == "off":
            return None
        start, _, end = raw.partition("-")
        try:
            window = (int(start), int(end))
        except ValueError:
            window = (-1, -1)
        if not all(0 <= h <= 23 for h in window) or window[0] == window[1]:
            self.problems.append(f"{name} must look like 21-8 (local hours, start-end) or off")
            return None
        return window

    def templates(self, name: str) -> tuple[tuple[str, str], ...]:
        """Per-message template names: `first=tx_1,reminder=tx_2,first.insufficient_funds=tx_3,alert=tx_9`."""
        raw = self.text(name)
        if raw is None:
            return ()
        pairs = []
        for item in raw.split(","):
            key, _, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not TEMPLATE_KEY.match(key) or not value:
                self.problems.append(
                    f"{name} entries must be KEY=value with KEY one of {', '.join(MESSAGE_TEMPLATES)}, "
                    "optionally with a decline class (first.insufficient_funds), or alert"
                )
                return ()
            pairs.append((key, value))
        return tuple(pairs)

    def min_amounts(self, name: str) -> tuple[tuple[str, int], ...]:
        """Per-currency amounts in minor units, e.g. usd=50000,eur=45000."""
        from webhook_app.alerts import parse_min_amounts

        try:
            return tuple(sorted(parse_min_amounts(self.text(name), name).items()))
        except ValueError as exc:
            self.problems.append(str(exc))
            return ()

    def hour(self, name: str) -> int | None:
        """An hour of the day, 0-23, or None when unset."""
        raw = self.text(name)
        if raw is None:
            return None
        if not raw.isdigit() or not 0 <= int(raw) <= 23:
            self.problems.append(f"{name} must be an hour of the day, 0 to 23 (UTC)")
            return None
        return int(raw)

    def secret_list(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of secrets (several are accepted while one is rotated)."""
        return tuple(part.strip() for part in (self.text(name) or "").split(",") if part.strip())

    def flag(self, name: str, default: bool = False) -> bool:
        """true/false, yes/no, 1/0."""
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false")
        return default

    def url(self, name: str, default: str | None = None) -> str | None:
        value = self.text(name, default)
        if value is not None and not value.startswith(("http://", "https://")):
            self.problems.append(f"{name} must be an http(s) URL")
            return default
        return value.rstrip("/") if value else value

    def database_url(self) -> str:
        """DATABASE_URL, normalized; empty (with a problem) when it names no database we can use.

        Never falls back to the default SQLite file on a typo: that would quietly run on an empty
        database while the real one waits.
        """
        raw = self.text("DATABASE_URL")
        if raw is None:
            return default_database_url()
        url = normalize_database_url(raw)
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in DATABASE_SCHEMES:
            self.problems.append(
                "DATABASE_URL must be a postgres:// or postgresql:// URL, or sqlite:///<absolute path>"
            )
            return ""
        return url

    def sentry_dsn(self) -> str | None:
        """SENTRY_DSN: https://<key>@<host>/<project>, as Sentry shows it."""
        value = self.text("SENTRY_DSN")
        if value is None:
            return None
        parts = urlsplit(value)
        if (
            parts.scheme not in ("http", "https")
            or not parts.username
            or not parts.hostname
            or not parts.path.strip("/")
        ):
            self.problems.append("SENTRY_DSN must look like https://<key>@<host>/<project id>")
            return None
        return value


def load_settings(source: Mapping[str, object] | None = None) -> Settings:
    """Build Settings from `source` (default: the process environment).

    Problems are collected in `Settings.problems`, each naming its variable; nothing raises here
    (see `webhook_app.readiness` for what may not start with them).
    """
    r = _Reader(os.environ if source is None else source)
    env = (r.text("APP_ENV") or r.text("FLASK_ENV") or "development").lower()

    key = r.text("STRIPE_SECRET_KEY")
    if key and not key.startswith(("sk_", "rk_")):
        r.problems.append("STRIPE_SECRET_KEY must start with sk_ or rk_")
        key = None
    secrets = tuple(s.strip() for s in (r.text("STRIPE_WEBHOOK_SECRET") or "").split(",") if s.strip())
    if any(not s.startswith("whsec_") for s in secrets):
        r.problems.append("STRIPE_WEBHOOK_SECRET entries must start with whsec_")
        secrets = tuple(s for s in secrets if s.startswith("whsec_"))
    portal_config = r.text("STRIPE_PORTAL_CONFIGURATION")
    if portal_config and not portal_config.startswith("bpc_"):
        r.problems.append("STRIPE_PORTAL_CONFIGURATION must start with bpc_")
        portal_config = None
    secret_key = r.text("SECRET_KEY")
    http_timeout = r.number("HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1)
    finance_user, finance_password = r.text("FINANCE_USERNAME"), r.text("FINANCE_PASSWORD")
    if bool(finance_user) != bool(finance_password):
        r.problems.append("FINANCE_USERNAME and FINANCE_PASSWORD must be set together")
        finance_user = finance_password = None

    recurly_subdomain = r.text("RECURLY_SUBDOMAIN")
    if recurly_subdomain and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", recurly_subdomain):
        r.problems.append("RECURLY_SUBDOMAIN must be the site's subdomain only, e.g. acme (not acme.recurly.com)")
        recurly_subdomain = None

    settings = Settings(
        env=env,
        database_url=r.database_url(),
        database=DatabaseSettings(
            pool_size=int(r.number("DB_POOL_SIZE", DEFAULT_DB_POOL_SIZE, int, minimum=1)),
            max_overflow=int(r.number("DB_MAX_OVERFLOW", DEFAULT_DB_MAX_OVERFLOW, int, minimum=0)),
        ),
        web=WebSettings(
            concurrency=int(r.number("WEB_CONCURRENCY", DEFAULT_WEB_CONCURRENCY, int, minimum=1)),
            threads=int(r.number("GUNICORN_THREADS", DEFAULT_WEB_THREADS, int, minimum=1)),
        ),
        log_level=r.choice("LOG_LEVEL", "INFO", tuple(level.lower() for level in LOG_LEVELS)).upper(),
        max_body_bytes=int(r.number("WEBHOOK_MAX_BODY_BYTES", 512 * 1024, int, minimum=1024)),
        webhook_tolerance_seconds=int(r.number("WEBHOOK_TOLERANCE_SECONDS", 300, int, minimum=1)),
        messaging_provider=r.choice("MESSAGING_PROVIDER", "console", MESSAGING_PROVIDERS),
        stripe=StripeSettings(
            secret_key=key,
            webhook_secrets=secrets,
            api_base=r.url("STRIPE_API_BASE", DEFAULT_STRIPE_BASE) or DEFAULT_STRIPE_BASE,
            portal_configuration=portal_config,
            max_retries=int(r.number("STRIPE_MAX_RETRIES", 2, int)),
            timeout_seconds=r.number("STRIPE_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            rate_per_second=r.number("STRIPE_RATE_PER_SECOND", 0.0, minimum=0) or None,
        ),
        chargebee=ChargebeeSettings(
            site=r.text("CHARGEBEE_SITE"),
            api_key=r.text("CHARGEBEE_API_KEY"),
            webhook_username=r.text("CHARGEBEE_WEBHOOK_USERNAME"),
            webhook_password=r.text("CHARGEBEE_WEBHOOK_PASSWORD"),
            api_base=r.url("CHARGEBEE_API_BASE"),
            rate_per_second=r.number("CHARGEBEE_RATE_PER_SECOND", 0.0, minimum=0) or None,
        ),
        recurly=RecurlySettings(
            api_key=r.text("RECURLY_API_KEY"),
            webhook_secrets=r.secret_list("RECURLY_WEBHOOK_SECRET"),
            subdomain=recurly_subdomain,
            api_base=r.url("RECURLY_API_BASE"),
            collect_on_update=r.flag("RECURLY_COLLECT_ON_UPDATE"),
        ),
        paddle=PaddleSettings(
            api_key=r.text("PADDLE_API_KEY"),
            webhook_secrets=r.secret_list("PADDLE_WEBHOOK_SECRET"),
            client_token=r.text("PADDLE_CLIENT_TOKEN"),
            environment=r.choice("PADDLE_ENVIRONMENT", "production", PROVIDER_ENVIRONMENTS),
            api_base=r.url("PADDLE_API_BASE"),
        ),
        braintree=BraintreeSettings(
            merchant_id=r.text("BRAINTREE_MERCHANT_ID"),
            public_key=r.text("BRAINTREE_PUBLIC_KEY"),
            private_key=r.text("BRAINTREE_PRIVATE_KEY"),
            environment=r.choice("BRAINTREE_ENVIRONMENT", "production", PROVIDER_ENVIRONMENTS),
            api_base=r.url("BRAINTREE_API_BASE"),
            timeout_seconds=http_timeout,
        ),
        loops=LoopsSettings(
            api_key=r.text("LOOPS_API_KEY"),
            transactional_id=r.text("LOOPS_TRANSACTIONAL_ID"),
            event_name=r.text("LOOPS_EVENT_NAME", "paymentFailed") or "paymentFailed",
            api_base=r.url("LOOPS_API_BASE", DEFAULT_LOOPS_BASE) or DEFAULT_LOOPS_BASE,
            rate_per_second=r.number("LOOPS_RATE_PER_SECOND", 10.0, minimum=0.1),
            timeout_seconds=http_timeout,
            transactional_ids=r.templates("LOOPS_TRANSACTIONAL_IDS"),
            event_names=r.templates("LOOPS_EVENT_NAMES"),
        ),
        intercom=IntercomSettings(
            access_token=r.text("INTERCOM_ACCESS_TOKEN"),
            api_base=r.url("INTERCOM_API_BASE", DEFAULT_INTERCOM_BASE) or DEFAULT_INTERCOM_BASE,
            event_name=r.text("INTERCOM_EVENT_NAME", "payment-failed") or "payment-failed",
            timeout_seconds=http_timeout,
        ),
        worker=WorkerSettings(
            mode=r.choice("WORKER_MODE", "embedded", WORKER_MODES),
            concurrency=int(r.number("WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY, int, minimum=1)),
            poll_seconds=r.number("WORKER_POLL_SECONDS", 1.0, minimum=0.01),
            lease_seconds=int(r.number("WORKER_LEASE_SECONDS", 120, int, minimum=1)),
            retry_base_seconds=r.number("WORKER_RETRY_BASE_SECONDS", 10.0),
            retry_max_seconds=r.number("WORKER_RETRY_MAX_SECONDS", 3600.0),
            max_attempts=int(r.number("WORKER_MAX_ATTEMPTS", 12, int, minimum=1)),
            upkeep_seconds=r.number("WORKER_UPKEEP_SECONDS", 60.0, minimum=0.01),
        ),
        dunning=DunningSettings(
            cadence_days=r.days("DUNNING_CADENCE_DAYS", (0.0, 3.0, 7.0)),
            final_notice_days=(r.number("DUNNING_FINAL_NOTICE_DAYS", 13.0) or None),
            retry_attempts=(int(r.number("STRIPE_RETRY_ATTEMPTS", 0, int)) or None),
            quiet_hours=r.hours("QUIET_HOURS"),
            group_window_seconds=r.number("DUNNING_GROUP_WINDOW_SECONDS", 300.0),
        ),
        alerts=AlertSettings(
            slack_webhook_url=r.url("ALERT_SLACK_WEBHOOK_URL"),
            email=r.text("ALERT_EMAIL"),
            min_amounts=r.min_amounts("ALERT_MIN_AMOUNT"),
            digest_hour=r.hour("ALERT_DIGEST_HOUR"),
        ),
        links=LinkSettings(
            public_url=r.url("PUBLIC_URL"),
            secret_key=secret_key,
            max_age_days=int(r.number("LINK_MAX_AGE_DAYS", 30, int, minimum=1)),
            company_name=r.text("COMPANY_NAME", "Our team") or "Our team",
            return_url=r.url("PORTAL_RETURN_URL"),
        ),
        finance=FinanceSettings(username=finance_user, password=finance_password),
        privacy=PrivacySettings(pii_retention_days=int(r.number("PII_RETENTION_DAYS", 365, int, minimum=1))),
        sentry=SentrySettings(
            dsn=r.sentry_dsn(),
            environment=r.text("SENTRY_ENVIRONMENT", env),
            traces_sample_rate=r.number("SENTRY_TRACES_SAMPLE_RATE", 0.0),
        ),
        problems=tuple(r.problems),
    )
    return settings

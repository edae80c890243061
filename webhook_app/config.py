"""The one place that reads the environment.

`load_settings()` turns a mapping (the environment, or a test's dict) into a validated, frozen
`Settings`. A missing or malformed value never crashes start-up in development: it becomes a
`problem` naming the variable, so `/healthz` and `/readyz` still answer and the webhook says what is
missing (503). In production (`APP_ENV=production`) malformed values are fatal at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MESSAGING_PROVIDERS = ("console", "loops", "intercom")
WORKER_MODES = ("embedded", "external")
# Which message of a sequence this is; email tools may use a different template for each.
MESSAGE_TEMPLATES = ("first", "reminder", "final", "action_required")
DEFAULT_INTERCOM_BASE = "https://api.intercom.io"
DEFAULT_LOOPS_BASE = "https://app.loops.so/api"
DEFAULT_STRIPE_BASE = "https://api.stripe.com"


class ConfigError(ValueError):
    """A setting is malformed; the message names the variable and never its value."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build it with `load_settings`."""

    env: str = "development"
    database_url: str = ""
    stripe_secret_key: str | None = None
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_api_base: str = DEFAULT_STRIPE_BASE
    stripe_portal_configuration: str | None = None
    stripe_max_retries: int = 2
    stripe_timeout_seconds: float = 10.0
    webhook_tolerance_seconds: int = 300
    max_body_bytes: int = 512 * 1024
    portal_return_url: str | None = None
    public_url: str | None = None
    secret_key: str | None = None
    company_name: str = "Our team"
    link_max_age_days: int = 30
    messaging_provider: str = "console"
    loops_api_key: str | None = None
    loops_transactional_id: str | None = None
    loops_event_name: str = "paymentFailed"
    loops_api_base: str = DEFAULT_LOOPS_BASE
    loops_rate_per_second: float = 10.0
    intercom_access_token: str | None = None
    intercom_api_base: str = DEFAULT_INTERCOM_BASE
    intercom_event_name: str = "payment-failed"
    http_timeout_seconds: float = 10.0
    worker_mode: str = "embedded"
    worker_concurrency: int = 8
    worker_poll_seconds: float = 1.0
    worker_lease_seconds: int = 120
    worker_retry_base_seconds: float = 10.0
    worker_retry_max_seconds: float = 3600.0
    worker_max_attempts: int = 12
    dunning_cadence_days: tuple[float, ...] = (0.0, 3.0, 7.0)
    dunning_final_notice_days: float | None = 13.0
    stripe_retry_attempts: int | None = None
    quiet_hours: tuple[int, int] | None = None
    loops_transactional_ids: tuple[tuple[str, str], ...] = ()
    loops_event_names: tuple[tuple[str, str], ...] = ()
    finance_username: str | None = None
    finance_password: str | None = None
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    sentry_traces_sample_rate: float = 0.0
    log_level: str = "INFO"
    problems: tuple[str, ...] = field(default=())

    @property
    def stripe_livemode(self) -> bool | None:
        """True for a live key, False for a test key, None when no key is set."""
        key = self.stripe_secret_key or ""
        if "_live_" in key:
            return True
        if "_test_" in key:
            return False
        return None

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def missing_for_intake(self) -> list[str]:
        """Variables the webhook endpoint cannot work without."""
        return [] if self.stripe_webhook_secrets else ["STRIPE_WEBHOOK_SECRET"]

    def missing_for_sending(self) -> list[str]:
        """Variables the worker needs before it can message customers."""
        missing = [] if self.stripe_secret_key else ["STRIPE_SECRET_KEY"]
        if self.messaging_provider == "loops" and not self.loops_api_key:
            missing.append("LOOPS_API_KEY")
        if self.messaging_provider == "intercom" and not self.intercom_access_token:
            missing.append("INTERCOM_ACCESS_TOKEN")
        return missing


def _default_database_url() -> str:
    instance = Path(os.getcwd()) / "instance"
    return f"sqlite:///{instance / 'webhook_app.sqlite3'}"


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

    def number(self, name: str, default: float, kind=float, minimum: float = 0) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name} must be a {kind.__name__}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}")
            return default
        return value

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

    def mapping(self, name: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        pairs = []
        for item in raw.split(","):
            key, _, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if key not in keys or not value:
                self.problems.append(f"{name} entries must be KEY=value with KEY in {', '.join(keys)}")
                return ()
            pairs.append((key, value))
        return tuple(pairs)

    def url(self, name: str, default: str | None = None) -> str | None:
        value = self.text(name, default)
        if value is not None and not value.startswith(("http://", "https://")):
            self.problems.append(f"{name} must be an http(s) URL")
            return default
        return value.rstrip("/") if value else value


def load_settings(source: Mapping[str, object] | None = None) -> Settings:
    """Build Settings from `source` (default: the process environment).

    Problems are collected in `Settings.problems`; in production they raise `ConfigError`.
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
    if not secret_key and env == "production":
        r.problems.append("SECRET_KEY is required outside development")
    finance_user, finance_password = r.text("FINANCE_USERNAME"), r.text("FINANCE_PASSWORD")
    if bool(finance_user) != bool(finance_password):
        r.problems.append("FINANCE_USERNAME and FINANCE_PASSWORD must be set together")
        finance_user = finance_password = None

    settings = Settings(
        env=env,
        database_url=normalize_database_url(r.text("DATABASE_URL") or _default_database_url()),
        stripe_secret_key=key,
        stripe_webhook_secrets=secrets,
        stripe_api_base=r.url("STRIPE_API_BASE", DEFAULT_STRIPE_BASE),
        stripe_portal_configuration=portal_config,
        stripe_max_retries=int(r.number("STRIPE_MAX_RETRIES", 2, int)),
        stripe_timeout_seconds=r.number("STRIPE_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        webhook_tolerance_seconds=int(r.number("WEBHOOK_TOLERANCE_SECONDS", 300, int, minimum=1)),
        max_body_bytes=int(r.number("WEBHOOK_MAX_BODY_BYTES", 512 * 1024, int, minimum=1024)),
        portal_return_url=r.url("PORTAL_RETURN_URL"),
        public_url=r.url("PUBLIC_URL"),
        secret_key=secret_key,
        company_name=r.text("COMPANY_NAME", "Our team"),
        link_max_age_days=int(r.number("LINK_MAX_AGE_DAYS", 30, int, minimum=1)),
        messaging_provider=r.choice("MESSAGING_PROVIDER", "console", MESSAGING_PROVIDERS),
        loops_api_key=r.text("LOOPS_API_KEY"),
        loops_transactional_id=r.text("LOOPS_TRANSACTIONAL_ID"),
        loops_event_name=r.text("LOOPS_EVENT_NAME", "paymentFailed"),
        loops_api_base=r.url("LOOPS_API_BASE", DEFAULT_LOOPS_BASE),
        loops_rate_per_second=r.number("LOOPS_RATE_PER_SECOND", 10.0, minimum=0.1),
        intercom_access_token=r.text("INTERCOM_ACCESS_TOKEN"),
        intercom_api_base=r.url("INTERCOM_API_BASE", DEFAULT_INTERCOM_BASE),
        intercom_event_name=r.text("INTERCOM_EVENT_NAME", "payment-failed"),
        http_timeout_seconds=r.number("HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        worker_mode=r.choice("WORKER_MODE", "embedded", WORKER_MODES),
        worker_concurrency=int(r.number("WORKER_CONCURRENCY", 8, int, minimum=1)),
        worker_poll_seconds=r.number("WORKER_POLL_SECONDS", 1.0, minimum=0.01),
        worker_lease_seconds=int(r.number("WORKER_LEASE_SECONDS", 120, int, minimum=1)),
        worker_retry_base_seconds=r.number("WORKER_RETRY_BASE_SECONDS", 10.0),
        worker_retry_max_seconds=r.number("WORKER_RETRY_MAX_SECONDS", 3600.0),
        worker_max_attempts=int(r.number("WORKER_MAX_ATTEMPTS", 12, int, minimum=1)),
        dunning_cadence_days=r.days("DUNNING_CADENCE_DAYS", (0.0, 3.0, 7.0)),
        dunning_final_notice_days=(r.number("DUNNING_FINAL_NOTICE_DAYS", 13.0) or None),
        stripe_retry_attempts=(int(r.number("STRIPE_RETRY_ATTEMPTS", 0, int)) or None),
        quiet_hours=r.hours("QUIET_HOURS"),
        loops_transactional_ids=r.mapping("LOOPS_TRANSACTIONAL_IDS", MESSAGE_TEMPLATES),
        loops_event_names=r.mapping("LOOPS_EVENT_NAMES", MESSAGE_TEMPLATES),
        finance_username=finance_user,
        finance_password=finance_password,
        sentry_dsn=r.text("SENTRY_DSN"),
        sentry_environment=r.text("SENTRY_ENVIRONMENT", env),
        sentry_traces_sample_rate=r.number("SENTRY_TRACES_SAMPLE_RATE", 0.0),
        log_level=(r.text("LOG_LEVEL", "INFO") or "INFO").upper(),
        problems=tuple(r.problems),
    )
    if settings.problems and settings.is_production:
        raise ConfigError("; ".join(settings.problems))
    return settings

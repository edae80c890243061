"""Settings: one reader of the environment, clear problems naming the variable, never the value."""

from __future__ import annotations

import pytest

from webhook_app.config import instance_dir, load_settings


def test_defaults_run_on_sqlite_with_console_messages():
    settings = load_settings({})
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "instance/webhook_app.sqlite3"
    )
    assert settings.messaging_provider == "console" and settings.worker.mode == "embedded"
    assert settings.problems == ()


def test_heroku_postgres_url_is_accepted():
    assert (
        load_settings({"DATABASE_URL": "postgres://u:p@h:5432/d"}).database_url == "postgresql+psycopg://u:p@h:5432/d"
    )


def test_webhook_secrets_list_for_rotation():
    assert load_settings({"STRIPE_WEBHOOK_SECRET": "whsec_a, whsec_b"}).stripe.webhook_secrets == ("whsec_a", "whsec_b")


def test_key_mode_decides_livemode():
    assert load_settings({"STRIPE_SECRET_KEY": "sk_live_abc"}).stripe.livemode is True
    assert load_settings({"STRIPE_SECRET_KEY": "rk_test_abc"}).stripe.livemode is False
    assert load_settings({}).stripe.livemode is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("STRIPE_SECRET_KEY", "pk_test_oops"),
        ("WORKER_MODE", "sometimes"),
        ("MESSAGING_PROVIDER", "carrier-pigeon"),
        ("WORKER_CONCURRENCY", "many"),
        ("PUBLIC_URL", "example.com"),
        ("STRIPE_WEBHOOK_SECRET", "not-a-secret"),
        ("DUNNING_CADENCE_DAYS", "soon"),
        ("QUIET_HOURS", "night"),
        ("LOG_LEVEL", "chatty"),
        ("SENTRY_DSN", "not-a-dsn"),
        ("DUNNING_GROUP_WINDOW_SECONDS", "soon"),
        ("DB_POOL_SIZE", "0"),
        ("WEB_CONCURRENCY", "lots"),
    ],
)
def test_malformed_setting_is_one_problem_naming_the_variable_not_its_value(name, value):
    settings = load_settings({name: value})
    assert len(settings.problems) == 1
    assert name in settings.problems[0] and value not in settings.problems[0]


def test_personal_data_retention_defaults_to_a_year_and_is_validated():
    assert load_settings({}).privacy.pii_retention_days == 365
    assert load_settings({"PII_RETENTION_DAYS": "90"}).privacy.pii_retention_days == 90
    bad = load_settings({"PII_RETENTION_DAYS": "0"})
    assert bad.privacy.pii_retention_days == 365 and bad.problems == ("PII_RETENTION_DAYS must be at least 1",)
    assert load_settings({"WORKER_UPKEEP_SECONDS": "5"}).worker.upkeep_seconds == 5.0


def test_loading_never_raises_in_production_problems_are_collected_by_name():
    # Refusing to start is the web and worker processes' decision (tests/unit/test_readiness.py):
    # `doctor` must still be able to load these settings and report.
    settings = load_settings({"APP_ENV": "production", "WORKER_CONCURRENCY": "many", "SENTRY_DSN": "nope"})
    assert settings.is_production
    assert [p.split(" ")[0] for p in settings.problems] == ["WORKER_CONCURRENCY", "SENTRY_DSN"]


def test_the_default_database_is_under_the_checkout_whatever_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = load_settings({}).database_url
    assert url == f"sqlite:///{instance_dir() / 'webhook_app.sqlite3'}"
    assert str(tmp_path) not in url
    assert (instance_dir().parent / "pyproject.toml").exists()


@pytest.mark.parametrize(
    "value", ["postgress://u:p@h/d", "mysql://u@h/d", "instance/db.sqlite3", "sqlite3:///x.db", "http://x"]
)
def test_a_malformed_database_url_is_a_problem_never_the_default_database(value):
    settings = load_settings({"DATABASE_URL": value})
    assert settings.database_url == ""
    assert settings.problems == (
        "DATABASE_URL must be a postgres:// or postgresql:// URL, or sqlite:///<absolute path>",
    )
    assert "u:p" not in settings.problems[0]


def test_group_window_and_pool_defaults_and_overrides():
    defaults = load_settings({})
    assert defaults.dunning.group_window_seconds == 300
    assert (defaults.database.pool_size, defaults.database.max_overflow, defaults.web.concurrency) == (4, 1, 2)
    custom = load_settings(
        {"DUNNING_GROUP_WINDOW_SECONDS": "5", "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "0", "WEB_CONCURRENCY": "3"}
    )
    assert custom.dunning.group_window_seconds == 5
    assert (custom.database.per_process, custom.web.concurrency) == (2, 3)

"""Settings: one reader of the environment, clear problems naming the variable, never the value."""

from __future__ import annotations

import pytest

from webhook_app.config import ConfigError, load_settings


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
    ],
)
def test_malformed_setting_is_one_problem_naming_the_variable_not_its_value(name, value):
    settings = load_settings({name: value})
    assert len(settings.problems) == 1
    assert name in settings.problems[0] and value not in settings.problems[0]


def test_production_refuses_to_start_with_problems():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings({"APP_ENV": "production"})


def test_personal_data_retention_defaults_to_a_year_and_is_validated():
    assert load_settings({}).privacy.pii_retention_days == 365
    assert load_settings({"PII_RETENTION_DAYS": "90"}).privacy.pii_retention_days == 90
    bad = load_settings({"PII_RETENTION_DAYS": "0"})
    assert bad.privacy.pii_retention_days == 365 and bad.problems == ("PII_RETENTION_DAYS must be at least 1",)
    assert load_settings({"WORKER_UPKEEP_SECONDS": "5"}).worker.upkeep_seconds == 5.0

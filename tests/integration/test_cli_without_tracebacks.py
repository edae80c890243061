"""Every `webhook-app` command, under a malformed configuration and against a database that is not
migrated, missing, at a path that cannot exist, or unreachable: one clear line with the fix, a
non-zero exit, never a traceback. Only `db upgrade` creates a database.

Commands run in-process through the real `webhook-app` group (`cli.build_group`, what the console
script runs), with the configuration in the environment; two run as the console script itself.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from flask import Flask, jsonify
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL, ROOT_ENV_KEYS, postgres_schema_url
from tests.standins import serve
from webhook_app.cli import build_group
from webhook_app.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[2]
# What Stripe says to a key without the permission a command needs (403 is not retried).
STRIPE_REFUSAL = (
    "The provided key 'sk_test_cli_0123456789' does not have the required permissions for this endpoint. "
    "Having trouble? Contact support@stripe.com."
)

# Every command, with arguments that let it get as far as it can. A new command must be added here
# (test_every_command_is_covered fails otherwise).
# `db upgrade` comes last: it fixes the database the others are tried against.
INVOCATIONS: dict[str, list[str]] = {
    "worker": ["worker", "--once"],
    "run": ["run", "--port", "9"],
    "events list": ["events", "list"],
    "events replay": ["events", "replay", "--failed"],
    "events sync": ["events", "sync"],
    "notifications list": ["notifications", "list", "--status", "failed"],
    "campaign": ["campaign", "--dry-run"],
    "report": ["report"],
    "finance rebuild-rollups": ["finance", "rebuild-rollups"],
    "doctor": ["doctor"],
    "portal setup": ["portal", "setup"],
    "stripe register-endpoint": ["stripe", "register-endpoint", "--url", "https://x.example/webhooks/stripe"],
    "routes": ["routes"],
    "shell": ["shell"],
    "db upgrade": ["db", "upgrade"],
}
# Commands that do not need the database, and may succeed whatever state it is in.
NO_DATABASE = {"routes", "shell", "portal setup", "stripe register-endpoint"}

BASE = {
    "FLASK_SKIP_DOTENV": "1",
    "STRIPE_SECRET_KEY": "sk_test_cli_0123456789",
    "STRIPE_WEBHOOK_SECRET": "whsec_cli_0123456789",
    "STRIPE_MAX_RETRIES": "0",
    "STRIPE_TIMEOUT_SECONDS": "2",
    "WORKER_CONCURRENCY": "1",
}
MALFORMED = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgress://user:hunter2@db.example/app",  # a typo in the scheme
    "STRIPE_SECRET_KEY": "pk_live_not_a_secret_key",
    "WORKER_CONCURRENCY": "many",
    "MESSAGING_PROVIDER": "pigeon",
    "LOG_LEVEL": "chatty",
    "SENTRY_DSN": "not a dsn",
    "QUIET_HOURS": "night",
    "PUBLIC_URL": "recover.example.com",
    "DUNNING_GROUP_WINDOW_SECONDS": "soon",
    "DB_POOL_SIZE": "-1",
}


@pytest.fixture(autouse=True)
def refusing_stripe():
    """A Stripe that refuses every request with 403, as for a restricted key lacking a permission."""
    app = Flask("refusing-stripe")

    @app.route("/<path:_path>", methods=["GET", "POST"])
    def refuse(_path: str):
        return jsonify({"error": {"type": "invalid_request_error", "message": STRIPE_REFUSAL}}), 403

    served = serve(app)
    BASE["STRIPE_API_BASE"] = served.url
    yield served.url
    served.stop()


def collected_commands() -> set[str]:
    """Every leaf command of the group, as "group command" paths."""
    group = build_group()
    runner = CliRunner()
    ctx_names: set[str] = set()

    def walk(command: click.Command, prefix: str, ctx: click.Context) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), f"{prefix} {name}".strip(), ctx)
        else:
            ctx_names.add(prefix)

    env = {**BASE, "DATABASE_URL": "sqlite:////nonexistent/x.sqlite3"}
    with runner.isolation(env=env), group.make_context("webhook-app", [], resilient_parsing=True) as ctx:
        walk(group, "", ctx)
    return ctx_names


def test_every_command_is_covered():
    assert collected_commands() == set(INVOCATIONS)


def run_all(env: dict[str, str]) -> dict[str, click.testing.Result]:
    runner = CliRunner()
    clean = {key: None for key in ROOT_ENV_KEYS}  # nothing of the developer's shell leaks in
    return {
        name: runner.invoke(build_group(), args, env={**clean, **BASE, **env}) for name, args in INVOCATIONS.items()
    }


def assert_one_clear_line(name: str, result: click.testing.Result, *needles: str) -> None:
    output = result.output
    assert "Traceback" not in output, f"{name}:\n{output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), f"{name}: {result.exception!r}"
    assert result.exit_code != 0, f"{name} exited 0:\n{output}"
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"{name}:\n{output}"
    for needle in needles:
        assert needle in errors[0], f"{name}: {needle!r} not in {errors[0]!r}"
    assert "hunter2" not in output


def test_a_malformed_configuration_gives_one_line_per_command():
    results = run_all(MALFORMED)
    for name, result in results.items():
        assert "Traceback" not in result.output, f"{name}:\n{result.output}"
        if name == "doctor":
            continue  # it reports instead, below
        if name in ("routes", "shell"):
            assert result.exit_code == 0, f"{name}: {result.output}"
            continue
        if name in ("worker", "run"):
            assert_one_clear_line(name, result, "APP_ENV=production", "DATABASE_URL must be", "STRIPE_SECRET_KEY")
        elif name in ("portal setup", "stripe register-endpoint"):
            assert_one_clear_line(name, result, "STRIPE_SECRET_KEY")
        else:
            assert_one_clear_line(name, result, "DATABASE_URL is malformed", "Fix:")
    doctor = results["doctor"]
    assert doctor.exit_code == 1
    for problem in ("DATABASE_URL must be", "WORKER_CONCURRENCY must be", "LOG_LEVEL must be", "SENTRY_DSN must"):
        assert problem in doctor.output


@pytest.fixture
def empty_sqlite(tmp_path) -> str:
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


@pytest.fixture
def empty_postgres() -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_database_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_schema_url(PG_URL, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.parametrize("database", ["empty_sqlite", pytest.param("empty_postgres", marks=pytest.mark.postgres)])
def test_an_unmigrated_database_gives_one_line_with_the_upgrade_command(request, database):
    url = request.getfixturevalue(database)
    results = run_all({"DATABASE_URL": url})
    for name, result in results.items():
        if name in NO_DATABASE or name in ("doctor", "db upgrade"):
            assert "Traceback" not in result.output, f"{name}:\n{result.output}"
            continue
        assert_one_clear_line(name, result, "is not migrated", "Fix: run `webhook-app db upgrade`")
    assert "✗ database" in results["doctor"].output and results["doctor"].exit_code == 1
    upgrade = results["db upgrade"]
    assert upgrade.exit_code == 0 and "applied 0001: initial schema" in upgrade.output


def test_a_missing_sqlite_file_is_named_and_only_db_upgrade_creates_it(tmp_path):
    path = tmp_path / "nowhere-yet.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{path}"}
    runner = CliRunner()
    for name, args in INVOCATIONS.items():
        if name == "db upgrade":
            continue
        result = runner.invoke(build_group(), args, env={**BASE, **env})
        assert "Traceback" not in result.output, f"{name}:\n{result.output}"
        if name not in NO_DATABASE and name != "doctor":
            assert_one_clear_line(name, result, f"no database at {path}", "run `webhook-app db upgrade`")
        assert not path.exists(), f"{name} created the database"
    upgrade = runner.invoke(build_group(), ["db", "upgrade"], env={**BASE, **env})
    assert upgrade.exit_code == 0, upgrade.output
    assert f"created a new SQLite database at {path}" in upgrade.output
    assert path.exists()
    again = runner.invoke(build_group(), ["db", "upgrade"], env={**BASE, **env})
    assert "nothing to apply" in again.output


def test_a_path_that_cannot_exist_is_named_by_every_command(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker}/db.sqlite3"
    results = run_all({"DATABASE_URL": url})
    for name, result in results.items():
        if name in NO_DATABASE or name == "doctor":
            assert "Traceback" not in result.output, f"{name}:\n{result.output}"
            continue
        if name == "db upgrade":
            assert_one_clear_line(name, result, "cannot create the database at", "Fix: point DATABASE_URL")
        else:
            assert_one_clear_line(name, result, f"no database at {blocker}/db.sqlite3")


def test_an_unreachable_server_is_named_by_every_command():
    results = run_all({"DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:9/app"})
    for name, result in results.items():
        if name in NO_DATABASE or name == "doctor":
            assert "Traceback" not in result.output, f"{name}:\n{result.output}"
            continue
        assert_one_clear_line(name, result, "the database at 127.0.0.1:9/app is unreachable", "check DATABASE_URL")
    assert "✗ database" in results["doctor"].output


def test_doctor_runs_and_reports_in_production_whatever_is_broken():
    result = CliRunner().invoke(build_group(), ["doctor"], env={**BASE, **MALFORMED})
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert (
        "✗ environment        DATABASE_URL must be a postgres:// or postgresql:// URL, or sqlite:///<absolute path>"
        in lines
    )
    for name in ("connections", "messages", "inbox"):
        assert any(line.startswith(f"! {name}") and "not checked" in line for line in lines), name
    assert "APP_ENV=production: the web and worker processes will not start" in result.output


def console_script(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ROOT_ENV_KEYS}
    return subprocess.run(
        [sys.executable, "-m", "webhook_app.cli", *args],
        env={**clean, **BASE, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_console_script_prints_one_line_on_stderr_and_no_dotenv_tip(tmp_path):
    (tmp_path / ".env").write_text("COMPANY_NAME=Somewhere\n")
    result = console_script("events", "list", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"Error: no database at {tmp_path / 'x.sqlite3'}. Fix: run `webhook-app db upgrade` to create it, "
        "or point DATABASE_URL at the existing database"
    ]
    assert "python-dotenv" not in result.stderr


def test_the_console_script_in_production_names_what_the_worker_lacks(tmp_path):
    result = console_script(
        "worker",
        env={
            "APP_ENV": "production",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
            "STRIPE_WEBHOOK_SECRET": "",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    for name in ("STRIPE_WEBHOOK_SECRET", "SECRET_KEY", "PUBLIC_URL", "MESSAGING_PROVIDER"):
        assert name in line


def test_a_providers_refusal_is_shown_whole_with_its_support_address_and_no_key(empty_sqlite):
    result = CliRunner().invoke(build_group(), ["portal", "setup"], env={**BASE, "DATABASE_URL": empty_sqlite})
    assert_one_clear_line("portal setup", result, "does not have the required permissions", "support@stripe.com")
    assert "sk_test_cli_0123456789" not in result.output


def test_doctors_table_has_no_log_lines_in_it(tmp_path, refusing_stripe):
    database = tmp_path / "doctor.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{database}", "LOG_LEVEL": "DEBUG", "STRIPE_API_BASE": refusing_stripe}
    assert console_script("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    result = console_script("doctor", env=env, cwd=tmp_path)
    table = [line for line in result.stdout.splitlines() if line.strip()]
    assert table, result.stderr
    for line in table:
        assert line[:2] in ("✓ ", "✗ ", "! ") or line.startswith(("    ", "APP_ENV=", "everything")), line
    assert '{"ts"' not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_engines_take_their_pool_from_the_settings():
    from webhook_app.config import DatabaseSettings
    from webhook_app.db import make_engine

    engine = make_engine("postgresql+psycopg://app@127.0.0.1:9/app", DatabaseSettings(pool_size=3, max_overflow=2))
    assert (engine.pool.size(), engine.pool._max_overflow) == (3, 2)  # no connection is opened for this
    engine.dispose()

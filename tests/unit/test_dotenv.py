""".env: read by every `webhook-app` command and by gunicorn's config (python-dotenv, Flask's
convention); `.env.example` means the same to python-dotenv and to `set -a; . ./.env`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_SKIP_DOTENV", "WEB_CONCURRENCY", "GUNICORN_THREADS")}
    env.update(extra)
    return env


def test_env_example_means_the_same_to_dotenv_and_to_the_shell(tmp_path):
    example = ROOT / ".env.example"
    from_dotenv = {k: v for k, v in dotenv_values(example).items() if v is not None}
    script = f"set -a; . '{example}'; set +a; env -0"
    shell = subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"]}, capture_output=True, check=True)
    from_shell = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    assert from_dotenv, "the example defines variables"
    assert {k: from_shell.get(k) for k in from_dotenv} == from_dotenv
    assert from_dotenv["COMPANY_NAME"] == "Acme Cloud"  # a value with a space, quoted


def test_gunicorns_config_reads_dotenv_and_the_shell_wins(tmp_path):
    (tmp_path / ".env").write_text("WEB_CONCURRENCY=3\nGUNICORN_THREADS=7\n")
    probe = (
        f"import runpy; ns = runpy.run_path({str(ROOT / 'gunicorn.conf.py')!r}); print(ns['workers'], ns['threads'])"
    )
    read = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert read.stdout.split() == ["3", "7"], read.stderr
    shell_wins = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=clean_env(WEB_CONCURRENCY="5"), capture_output=True, text=True
    )
    assert shell_wins.stdout.split() == ["5", "7"], shell_wins.stderr
    skipped = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=clean_env(FLASK_SKIP_DOTENV="1"),
        capture_output=True,
        text=True,
    )
    assert skipped.stdout.split() == ["2", "8"], skipped.stderr  # the defaults


def test_webhook_app_commands_read_dotenv(tmp_path):
    database = tmp_path / "from-dotenv.sqlite3"
    (tmp_path / ".env").write_text(f'DATABASE_URL="sqlite:///{database}"\nCOMPANY_NAME="Dot Env Inc"\n')
    env = clean_env()
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "webhook_app.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"created a new SQLite database at {database}" in result.stdout
    assert database.exists()
    assert "python-dotenv" not in result.stderr

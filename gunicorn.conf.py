"""Gunicorn settings for the web process (Procfile `web`), from the app's own settings.

`.env` is read first (as the `webhook-app` commands do). WEB_CONCURRENCY processes (default 2,
Heroku's default on small dynos) with GUNICORN_THREADS threads each; each process holds at most
DB_POOL_SIZE + DB_MAX_OVERFLOW PostgreSQL connections (see the README's connection budget).
"""

import os
import sys

from webhook_app.config import load_dotenv, load_settings

load_dotenv()
_settings = load_settings()

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# Intake is I/O bound (one small database write per request): a few processes with threads each.
workers = _settings.web.concurrency
threads = _settings.web.threads
worker_class = "gthread"
# Stripe waits up to 10 s for an answer; answer well before that or let the request die.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 25  # Heroku sends SIGKILL 30 s after SIGTERM
keepalive = 5
# Recycling a process guards against slow leaks, but a start costs about 0.8 s of CPU (imports, app,
# checks) and hands the embedded worker to another process: every 5,000 requests meant every few seconds
# of a billing-cycle burst, exactly when CPU is short (docs/performance.md). 100,000 is hours of normal
# traffic and still bounds a leak.
max_requests = 100_000
max_requests_jitter = 10_000
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG") else None
errorlog = "-"


def on_starting(server):  # type: ignore[no-untyped-def]  (gunicorn's hook signature)
    """Refuse to start in production with an essential missing, naming each, before any worker forks.

    Without this, every worker would fail to boot on its own and gunicorn would print a traceback.
    """
    if not _settings.is_production:
        return  # in development each worker logs what is missing and serves anyway (/readyz says 503)
    from webhook_app import create_app, readiness
    from webhook_app.services import services

    app = create_app()
    with app.app_context():
        try:
            readiness.refuse_to_start(services(), "web")
        except readiness.StartupRefused as exc:
            readiness.log_problems(services(), exc.problems)
            server.log.error(str(exc))
            sys.exit(1)
        finally:
            services().db.dispose()

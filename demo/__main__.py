"""`python -m demo` (`make demo`): the app, a stand-in Stripe and a stand-in Loops, on this machine.

Nothing here reads your `.env` or your environment's keys: the app gets its own configuration, a fresh
SQLite database in a temporary folder, and the stand-ins' URLs. It refuses to start with
APP_ENV=production.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from demo import loops_standin, stripe_standin
from demo.loops_standin import render

WEBHOOK_SECRET = "whsec_demo_" + "0" * 24  # the stand-in signs with it; nothing outside this process knows it
STRIPE_KEY = "sk_test_demo_standin_key"
LOOPS_KEY = "loops_demo_standin_key"
FINANCE_USER, FINANCE_PASSWORD = "demo", "demo"


def _serve(app: Any, port: int) -> Any:
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _show(message: dict[str, Any]) -> None:
    print("\n──── email sent through Loops (stand-in) " + "─" * 30, flush=True)
    print(render(message), flush=True)
    print("─" * 71 + "\n", flush=True)


def app_config(database_url: str, app_url: str, stripe_url: str, loops_url: str) -> dict[str, str]:
    """The app's whole configuration for the demo (no variable of yours is used)."""
    return {
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_url,
        "STRIPE_MAX_RETRIES": "0",
        "MESSAGING_PROVIDER": "loops",
        "LOOPS_API_KEY": LOOPS_KEY,
        "LOOPS_API_BASE": f"{loops_url}/api",
        "LOOPS_TRANSACTIONAL_ID": "demo_recovery",
        "PUBLIC_URL": app_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "PORTAL_RETURN_URL": f"{app_url}/finance",
        "COMPANY_NAME": "Demo Cloud",
        "FINANCE_USERNAME": FINANCE_USER,
        "FINANCE_PASSWORD": FINANCE_PASSWORD,
        "WORKER_MODE": "embedded",
        "WORKER_POLL_SECONDS": "0.2",
        "WORKER_CONCURRENCY": "2",
        # One failure, one message at once: the demo does not wait out the production grouping window.
        "DUNNING_GROUP_WINDOW_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }


def main(argv: list[str] | None = None) -> int:
    """Start everything, print what to do, and run until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")), help="the app's port")
    parser.add_argument("--stripe-port", type=int, default=5001)
    parser.add_argument("--loops-port", type=int, default=5002)
    args = parser.parse_args(argv)

    env = (os.environ.get("APP_ENV") or os.environ.get("FLASK_ENV") or "").lower()
    if env == "production":
        print(
            "refusing to start the demo with APP_ENV=production: it fakes Stripe and Loops. "
            "Unset APP_ENV (or run it on a development machine).",
            file=sys.stderr,
        )
        return 1

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request log lines between the emails
    from webhook_app import create_app, migrate
    from webhook_app.embedded import start_embedded
    from webhook_app.services import services

    folder = Path(tempfile.mkdtemp(prefix="webhook-app-demo-"))
    app_url = f"http://127.0.0.1:{args.port}"
    stripe = stripe_standin.build(webhook_url=f"{app_url}/webhooks/stripe", webhook_secret=WEBHOOK_SECRET)
    loops = loops_standin.build(LOOPS_KEY, show=_show)
    servers = [_serve(stripe.app, args.stripe_port), _serve(loops.app, args.loops_port)]
    stripe.base_url = f"http://127.0.0.1:{args.stripe_port}"
    config = app_config(
        f"sqlite:///{folder / 'demo.sqlite3'}", app_url, stripe.base_url, f"http://127.0.0.1:{args.loops_port}"
    )
    app = create_app(config)
    with app.app_context():
        svc = services()
        migrate.upgrade(svc.db)
        worker = start_embedded(svc, config)  # the worker process builds its app from the same settings
    servers.append(_serve(app, args.port))

    print(
        f"""
webhook-app demo: the recovery flow end to end, on this machine (no Stripe or Loops account used).
  the app         {app_url}   (SQLite in {folder}, embedded worker)
  Stripe (fake)   {stripe.base_url}
  Loops (fake)    http://127.0.0.1:{args.loops_port}   (emails are printed below)

1. Trigger a failed payment: open {stripe.base_url} and press "Fail a payment"
   (or: curl -X POST {stripe.base_url}/demo/fail)
2. See the message: the recovery email appears below within a few seconds, with its link.
3. Open the link: it mints a (fake) Stripe portal session at click time; press "Save card and pay".
4. See it on {app_url}/finance (user {FINANCE_USER}, password {FINANCE_PASSWORD}): one recovery,
   attributed to the link.
Ctrl-C stops everything (the temporary database goes with it).
""",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    for server in servers:
        server.shutdown()
    worker.stop()  # waits while the worker finishes the item in hand: then nothing touches the database
    with app.app_context():
        services().db.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    print("demo stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""webhook_app: payment recovery for SaaS businesses on Stripe.

`create_app(config=None)` builds everything: settings, database, adapters, blueprints, CLI.
Nothing is created at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# Pages are plain server-rendered HTML with no scripts: a strict policy costs nothing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(config: Mapping[str, Any] | None = None, *, billing=None, messenger=None, clock=None) -> Flask:
    """Build the Flask app. `config` replaces the environment (tests pass a dict); the keywords
    replace adapters (tests pass fakes of our own protocols or clients pointed at stand-ins)."""
    from webhook_app import cli, finance, health, intake, links
    from webhook_app.clock import SystemClock
    from webhook_app.config import load_settings
    from webhook_app.db import Database
    from webhook_app.observability import configure_logging, init_sentry
    from webhook_app.services import Services, build_billing, build_messenger

    settings = load_settings(config)
    configure_logging(settings)
    init_sentry(settings)
    for problem in settings.problems:
        log.error("configuration problem: %s", problem)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["SECRET_KEY"] = settings.secret_key
    app.extensions["webhook_app"] = Services(
        settings=settings,
        db=Database(settings.database_url),
        clock=clock or SystemClock(),
        billing=billing if billing is not None else build_billing(settings),
        messenger=messenger if messenger is not None else build_messenger(settings),
    )
    app.register_blueprint(intake.bp)
    app.register_blueprint(links.bp)
    app.register_blueprint(health.bp)
    finance.register(app)
    cli.register(app)

    @app.after_request
    def _security_headers(response):
        if response.mimetype == "text/html":
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app

"""webhook_app: payment recovery for SaaS businesses on Stripe and the other billing systems they use.

`create_app(config=None)` builds everything: settings, database, adapters, blueprints, CLI.
Nothing is created at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from flask import Flask, Response

if TYPE_CHECKING:
    from webhook_app.adapters import Messenger
    from webhook_app.providers.base import Billing

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


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    billing: Billing | Mapping[str, Billing] | None = None,
    messenger: Messenger | None = None,
    clock: Any = None,
    log_stream: TextIO | None = None,
) -> Flask:
    """Build the Flask app. `config` replaces the environment (tests pass a dict); the keywords
    replace adapters (tests pass fakes of our own protocols): `billing` is Stripe's runtime port, or a
    mapping of provider name to runtime port. `log_stream`: where log lines go (stdout by default;
    the CLI passes stderr so logs never mix with a command's output)."""
    from webhook_app import cli, finance, health, intake, links
    from webhook_app.clock import SystemClock
    from webhook_app.config import load_settings
    from webhook_app.db import Database
    from webhook_app.observability import configure_logging, init_sentry
    from webhook_app.providers import build_providers
    from webhook_app.services import Services, build_alerters, build_messenger, share_rate_limits

    settings = load_settings(config)
    configure_logging(settings, log_stream)
    init_sentry(settings)
    # Problems are not logged here: every command builds the app, and `doctor` reports them. The web
    # and worker processes log them at start (`readiness.refuse_to_start`), and refuse in production.

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["SECRET_KEY"] = settings.links.secret_key
    chosen_messenger = messenger if messenger is not None else build_messenger(settings)
    ports = dict(billing) if isinstance(billing, Mapping) else ({"stripe": billing} if billing is not None else {})
    providers = build_providers(settings, ports)
    svc = Services(
        settings=settings,
        db=Database(settings.database_url, settings.database),
        clock=clock or SystemClock(),
        providers=providers,
        messenger=chosen_messenger,
        alerters=build_alerters(settings, chosen_messenger),
    )
    # The providers' limits hold across every process on this database (adapters from settings only).
    share_rate_limits(svc, messenger=messenger is None, stripe_api="stripe" not in ports)
    app.extensions["webhook_app"] = svc
    # Webhook deliveries are answered in front of Flask (intake.py says why); the rest is Flask's.
    # Replacing `wsgi_app` is how Flask's documentation adds WSGI middleware.
    app.wsgi_app = intake.Intake(app.wsgi_app, svc)  # type: ignore[method-assign]
    app.add_url_rule(f"{intake.PREFIX}<name>", "intake", intake.flask_view, methods=["POST"])
    app.register_blueprint(links.bp)
    app.register_blueprint(health.bp)
    finance.register(app)
    for provider in providers.values():  # e.g. /pay/paddle/<token>, /pay/braintree/<token>
        for blueprint in provider.blueprints():
            app.register_blueprint(blueprint)
    cli.register(app, providers.values())

    @app.after_request
    def _security_headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app

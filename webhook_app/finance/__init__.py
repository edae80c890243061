"""Finance review: recovered revenue for humans (dashboard) and machines (CSV, JSON)."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the finance blueprint (built in `finance.views`)."""
    try:
        from webhook_app.finance.views import bp
    except ImportError:  # the finance pages are not built yet
        return
    app.register_blueprint(bp)

"""Finance review: recovered revenue for humans (dashboard), machines (CSV, JSON) and terminals (report).

Layout: `period` / `cursor` parse parameters, `queries` computes the figures per currency, `chart` lays
out the weekly SVG chart, `export` streams CSV, `views` is the blueprint, `report` the CLI command.
This package only reads: every ledger write is in `webhook_app.ledger`.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the finance blueprint (`/finance`, `/finance/recoveries.csv`, `/finance/recoveries.json`)."""
    from webhook_app.finance.views import bp

    app.register_blueprint(bp)

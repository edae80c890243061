"""Finance review: recovered revenue for humans (dashboard), machines (CSV, JSON) and terminals (report).

Layout: `period` / `cursor` parse parameters, `paging` pages lists by keyset, `queries` computes the
figures per currency, `lists` the at-risk and lost lists, `months` the two views of the rate by month,
`settled` money in the payout currency, `stats` the database-specific helpers (percentiles, months),
`chart` lays out the weekly SVG chart, `dashboard` gathers the dashboard's data, `export` streams CSV,
`views` is the blueprint, `report` the CLI command. This package only reads: every ledger write is in
`webhook_app.ledger`.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the finance blueprint (`/finance`, `/finance/months`, and their CSV and JSON exports)."""
    from webhook_app.finance.views import bp

    app.register_blueprint(bp)

"""`/finance` (dashboard), `/finance/recoveries.csv` and `/finance/recoveries.json`.

Every route sits behind HTTP basic auth (`finance.auth`); with FINANCE_USERNAME / FINANCE_PASSWORD unset
the pages are off and say so (404). Filters shared by all three: `since`, `until` (UTC dates, inclusive,
or ISO 8601 times; default: the last 90 days), `currency` (e.g. `usd`; default: all, each on its own)
and `mode` (`live`, `test`; default: both). Sorting and pagination happen in the database.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, render_template, request, stream_with_context, url_for

from webhook_app.finance import auth
from webhook_app.finance.chart import SERIES, weekly_chart
from webhook_app.finance.cursor import SORTS, Cursor, CursorError, check_sort
from webhook_app.finance.display import duration, percent
from webhook_app.finance.export import iter_csv
from webhook_app.finance.period import Period, PeriodError, default_period, parse_period, presets
from webhook_app.finance.queries import (
    ATTRIBUTION_LABELS,
    ATTRIBUTIONS,
    FilterError,
    Filters,
    currencies_in,
    page,
    parse_currency,
    parse_mode,
    parse_provider,
    row_dict,
    summarize,
    weekly,
)
from webhook_app.money import format_amount
from webhook_app.providers import dashboard_links
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("finance", __name__, url_prefix="/finance")

HTML_PAGE_SIZE = 50
JSON_PAGE_SIZE = 100
JSON_MAX_PAGE_SIZE = 500


def _wants_json() -> bool:
    return request.endpoint == "finance.recoveries_json"


def _error(status: int, code: str, message: str) -> Response:
    if _wants_json():
        response = jsonify({"error": code, "message": message})
        response.status_code = status
        return response
    return Response(message + "\n", status=status, mimetype="text/plain")


@bp.before_request
def _guard():
    """Off without credentials configured; 401 with a challenge without the right ones."""
    svc = services()
    if not auth.finance_enabled(svc.settings):
        message = "The finance pages are off: set FINANCE_USERNAME and FINANCE_PASSWORD to turn them on."
        if request.endpoint == "finance.dashboard":
            html = render_template("finance_off.html", company=svc.settings.links.company_name, message=message)
            return Response(html, status=404, mimetype="text/html")
        return _error(404, "finance_disabled", message)
    if not auth.credentials_ok(request.authorization, svc.settings):
        response = _error(401, "unauthorized", "Finance pages need a username and password.")
        response.headers["WWW-Authenticate"] = auth.challenge_header()
        return response
    return None


@bp.after_request
def _private(response: Response) -> Response:
    # Revenue figures must not be stored by shared caches or the browser's disk cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _filters() -> Filters:
    """The request's filters; raises PeriodError / FilterError with a message safe to show."""
    now = services().clock.now()
    args = request.args
    return Filters(
        parse_period(args.get("since"), args.get("until"), now),
        parse_currency(args.get("currency")),
        parse_mode(args.get("mode")),
        parse_provider(args.get("provider"), services().providers),
    )


def _cursor() -> Cursor | None:
    token = request.args.get("cursor")
    return Cursor.decode(token) if token else None


@bp.get("")
def dashboard():
    """The finance dashboard: per-currency figures, a weekly chart and the ledger table."""
    svc = services()
    now = svc.clock.now()
    error = None
    try:
        f = _filters()
        sort = check_sort(request.args.get("sort"))
        cursor = _cursor()
    except (PeriodError, FilterError, CursorError) as exc:
        error = str(exc)
        f, sort, cursor = Filters(default_period(now)), check_sort(None), None
    with svc.db.session() as s:
        summaries = summarize(s, f)
        series = weekly(s, f)
        rows = page(s, f, sort, cursor, HTML_PAGE_SIZE)
    if cursor is not None:
        sort = cursor.sort
    args = f.query_args()

    def link(**extra) -> str:
        return url_for("finance.dashboard", **{**args, **extra})

    table = []
    for row in rows.rows:
        item = row_dict(row, dashboard_links(svc.providers))
        item.update(
            amount_display=format_amount(row.amount, row.currency),
            time_to_recover=duration(row.seconds_to_recover),
            attribution_label=ATTRIBUTION_LABELS.get(row.attribution or "", "—"),
            date=row.recovered_at.strftime("%Y-%m-%d %H:%M"),
        )
        table.append(item)

    def sort_link(column: str) -> tuple[str, str]:
        """(url, arrow) for a sortable header: first click newest/largest first, second flips it."""
        current_column, descending = SORTS[sort]
        if current_column == column:
            target = column if descending else f"-{column}"
            arrow = " ↓" if descending else " ↑"
        else:
            target, arrow = f"-{column}", ""
        return link(sort=target), arrow

    query = {k: v for k, v in args.items() if k not in ("since", "until")}
    html = render_template(
        "finance.html",
        company=svc.settings.links.company_name,
        error=error,
        filters=f,
        period=f.period,
        summaries=summaries,
        charts={c: weekly_chart(c, weeks) for c, weeks in series.items()},
        series_labels=SERIES,
        attributions=[(a, ATTRIBUTION_LABELS[a]) for a in ATTRIBUTIONS],
        currencies=currencies_in(summaries, f.currency),
        presets=[
            (
                label,
                url_for("finance.dashboard", since=p.since_date.isoformat(), until=p.until_date.isoformat(), **query),
                _same(p, f.period),
            )
            for label, p in presets(now)
        ],
        rows=table,
        sort=sort,
        sort_date=sort_link("date"),
        sort_amount=sort_link("amount"),
        next_url=link(sort=sort, cursor=rows.next_cursor) if rows.next_cursor else None,
        prev_url=link(sort=sort, cursor=rows.prev_cursor) if rows.prev_cursor else None,
        first_url=link(sort=sort) if cursor is not None else None,
        csv_url=url_for("finance.recoveries_csv", **args),
        json_url=url_for("finance.recoveries_json", **args),
        money=format_amount,
        duration=duration,
        percent=percent,
        now=now,
    )
    return Response(html, status=400 if error else 200, mimetype="text/html")


def _same(a: Period, b: Period) -> bool:
    return a.since == b.since and a.until == b.until


@bp.get("/recoveries.csv")
def recoveries_csv():
    """The period's ledger rows as CSV, oldest first, streamed in batches."""
    svc = services()
    try:
        f = _filters()
    except (PeriodError, FilterError) as exc:
        return _error(400, "invalid_parameter", str(exc))
    name = f"recoveries_{f.period.since_date.isoformat()}_{f.period.until_date.isoformat()}"
    if f.currency:
        name += f"_{f.currency}"
    body = stream_with_context(iter_csv(svc.db, f, dashboard_links(svc.providers)))
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


@bp.get("/recoveries.json")
def recoveries_json():
    """The same rows as JSON, a page at a time: pass `next_cursor` back as `cursor` for the next."""
    svc = services()
    try:
        f = _filters()
        sort = check_sort(request.args.get("sort"))
        cursor = _cursor()
        limit = _limit(request.args.get("limit"))
    except (PeriodError, FilterError, CursorError) as exc:
        return _error(400, "invalid_parameter", str(exc))
    if cursor is not None and request.args.get("sort") and cursor.sort != sort:
        return _error(400, "invalid_parameter", "sort differs from the cursor's; drop one of them")
    with svc.db.session() as s:
        result = page(s, f, cursor.sort if cursor else sort, cursor, limit)
    return jsonify(
        {
            "object": "list",
            "data": [row_dict(r, dashboard_links(svc.providers)) for r in result.rows],
            "has_more": result.next_cursor is not None,
            "next_cursor": result.next_cursor,
            "previous_cursor": result.prev_cursor,
            "sort": cursor.sort if cursor else sort,
            "filters": {
                **f.period.as_dict(),
                "currency": f.currency,
                "mode": None if f.livemode is None else ("live" if f.livemode else "test"),
            },
        }
    )


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return JSON_PAGE_SIZE
    try:
        value = int(raw)
    except ValueError:
        raise FilterError("limit must be an integer") from None
    if not 1 <= value <= JSON_MAX_PAGE_SIZE:
        raise FilterError(f"limit must be between 1 and {JSON_MAX_PAGE_SIZE}")
    return value

"""`/finance` (dashboard), `/finance/months` (the rate by month), and the exports:
`/finance/recoveries.csv`, `/finance/recoveries.json`, `/finance/at-risk.json`, `/finance/lost.json`
`/finance/months.json` and `/finance/declines.json`.

Every route sits behind HTTP basic auth (`finance.auth`); with FINANCE_USERNAME / FINANCE_PASSWORD unset
the pages are off and say so (404). Filters shared by all: `since`, `until` (UTC dates, inclusive, or
ISO 8601 times; default: the last 90 days), `currency` (e.g. `usd`; default: all, each on its own),
`mode` (`live`, `test`; default: both) and `provider` (default: all). The at-risk list is the present,
not the period. Sorting and pagination happen in the database; sorting by amount needs one currency.
The dashboard pages its three lists independently: `sort`/`cursor` (ledger), `risk_sort`/`risk_cursor`
(at risk now), `lost_sort`/`lost_cursor` (lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, stream_with_context, url_for

from webhook_app.finance import auth
from webhook_app.finance.cursor import (
    AT_RISK_DEFAULT,
    AT_RISK_SORTS,
    DEFAULT_SORT,
    LOST_DEFAULT,
    LOST_SORTS,
    SORTS,
    Cursor,
    CursorError,
    Sorts,
    check_sort,
    require_one_currency,
)
from webhook_app.finance.dashboard import DashboardLists, ListState, dashboard_context, preset_links
from webhook_app.finance.declines import by_decline_class
from webhook_app.finance.display import duration, percent
from webhook_app.finance.export import iter_csv
from webhook_app.finance.lists import at_risk_items, at_risk_page, at_risk_totals, lost_items, lost_page
from webhook_app.finance.months import by_failure_month, by_recovery_month, month_span
from webhook_app.finance.paging import Page
from webhook_app.finance.period import PeriodError, default_period, parse_period
from webhook_app.finance.queries import (
    FilterError,
    Filters,
    page,
    parse_currency,
    parse_mode,
    parse_provider,
    row_dict,
)
from webhook_app.money import format_amount
from webhook_app.providers import dashboard_links
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("finance", __name__, url_prefix="/finance")

HTML_PAGE_SIZE = 50
JSON_PAGE_SIZE = 100
JSON_MAX_PAGE_SIZE = 500
JSON_ENDPOINTS = (
    "finance.recoveries_json",
    "finance.at_risk_json",
    "finance.lost_json",
    "finance.months_json",
    "finance.declines_json",
)
HTML_ENDPOINTS = ("finance.dashboard", "finance.months")


def _wants_json() -> bool:
    return request.endpoint in JSON_ENDPOINTS


def _error(status: int, code: str, message: str) -> Response:
    if _wants_json():
        response = jsonify({"error": code, "message": message})
        response.status_code = status
        return response
    return Response(message + "\n", status=status, mimetype="text/plain")


@bp.before_request
def _guard() -> Response | None:
    """Off without credentials configured; 401 with a challenge without the right ones."""
    svc = services()
    if not auth.finance_enabled(svc.settings):
        message = "The finance pages are off: set FINANCE_USERNAME and FINANCE_PASSWORD to turn them on."
        if request.endpoint in HTML_ENDPOINTS:
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
    # Revenue figures and customer names must not be stored by shared caches or the browser's disk cache.
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


@dataclass(frozen=True)
class ListParams:
    """Where one list's sort and cursor come from in the query string, and its sorts."""

    sort_param: str
    cursor_param: str
    sorts: Sorts
    default: str


LEDGER = ListParams("sort", "cursor", SORTS, DEFAULT_SORT)
AT_RISK = ListParams("risk_sort", "risk_cursor", AT_RISK_SORTS, AT_RISK_DEFAULT)
LOST = ListParams("lost_sort", "lost_cursor", LOST_SORTS, LOST_DEFAULT)


def _list_state(params: ListParams, currency: str | None) -> ListState:
    """A list's sort and cursor from the request; raises CursorError (a bad value, or an amount sort
    across currencies)."""
    sort = check_sort(request.args.get(params.sort_param), params.sorts, params.default)
    token = request.args.get(params.cursor_param)
    cursor = Cursor.decode(token, params.sorts) if token else None
    if cursor is not None:
        sort = cursor.sort
    require_one_currency(sort, currency, params.sorts)
    return ListState(sort, cursor)


@bp.get("")
def dashboard() -> Response:
    """The finance dashboard: at risk now, figures per currency, rates by month, lost, settled, ledger."""
    svc = services()
    now = svc.clock.now()
    errors: list[str] = []
    f = _filters_or_default(errors)
    states = {}
    for name, params in (("ledger", LEDGER), ("at_risk", AT_RISK), ("lost", LOST)):
        try:
            states[name] = _list_state(params, f.currency)
        except CursorError as exc:
            errors.append(str(exc).rstrip(".") + ".")
            states[name] = ListState(params.default, None)
    lists = DashboardLists(states["ledger"], states["at_risk"], states["lost"], HTML_PAGE_SIZE)
    with svc.db.session() as s:
        context = dashboard_context(s, f, lists, now, dashboard_links(svc.providers), svc.providers)
    html = render_template(
        "finance.html",
        company=svc.settings.links.company_name,
        errors=errors,
        csv_url=url_for("finance.recoveries_csv", **f.query_args()),
        json_url=url_for("finance.recoveries_json", **f.query_args()),
        at_risk_json_url=url_for("finance.at_risk_json", **f.query_args()),
        lost_json_url=url_for("finance.lost_json", **f.query_args()),
        **context,
    )
    return Response(html, status=400 if errors else 200, mimetype="text/html")


def _filters_or_default(errors: list[str]) -> Filters:
    try:
        return _filters()
    except (PeriodError, FilterError) as exc:
        errors.append(f"{exc} Showing the last 90 days instead.")
        return Filters(default_period(services().clock.now()))


@bp.get("/months")
def months() -> Response:
    """The two views of the recovery rate by calendar month, with time to recover (median, 90th percentile)."""
    svc = services()
    errors: list[str] = []
    f = _filters_or_default(errors)
    with svc.db.session() as s:
        failure, recovery = by_failure_month(s, f), by_recovery_month(s, f)
    html = render_template(
        "finance_months.html",
        company=svc.settings.links.company_name,
        errors=errors,
        filters=f,
        period=f.period,
        span=month_span(f.period)[0],
        failure_months=failure,
        recovery_months=recovery,
        currencies=sorted({*failure, *recovery, *([f.currency] if f.currency else [])}),
        providers=[(name, p.label) for name, p in svc.providers.items()],
        presets=preset_links("finance.months", f, svc.clock.now()),
        form_action=url_for("finance.months"),
        dashboard_url=url_for("finance.dashboard", **f.query_args()),
        json_url=url_for("finance.months_json", **f.query_args()),
        money=format_amount,
        duration=duration,
        percent=percent,
    )
    return Response(html, status=400 if errors else 200, mimetype="text/html")


@bp.get("/months.json")
def months_json() -> Response:
    """The same two views as JSON: per currency, one entry per whole month the period touches."""
    svc = services()
    try:
        f = _filters()
    except (PeriodError, FilterError) as exc:
        return _error(400, "invalid_parameter", str(exc))
    with svc.db.session() as s:
        failure, recovery = by_failure_month(s, f), by_recovery_month(s, f)
    return jsonify(
        {
            "months": month_span(f.period)[0].as_dict(),
            "by_first_failure": {c: [m.as_dict() for m in cells] for c, cells in failure.items()},
            "by_recovery": {c: [m.as_dict() for m in cells] for c, cells in recovery.items()},
        }
    )


@bp.get("/declines.json")
def declines_json() -> Response:
    """Recoveries and losses of the period by decline class, per currency."""
    svc = services()
    try:
        f = _filters()
    except (PeriodError, FilterError) as exc:
        return _error(400, "invalid_parameter", str(exc))
    with svc.db.session() as s:
        rows = by_decline_class(s, f)
    return jsonify(
        {"period": f.period.as_dict(), "by_decline_class": {c: [r.as_dict() for r in v] for c, v in rows.items()}}
    )


@bp.get("/recoveries.csv")
def recoveries_csv() -> Response:
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


def _json_list(
    params: ListParams,
    fetch: Callable[[Any, Filters, str, Cursor | None, int], Page],
    items: Callable[[Any, Page], list[dict[str, Any]]],
    extra: Callable[[Any, Filters], dict[str, Any]] | None = None,
) -> Response:
    """One page of a list as JSON: pass `next_cursor` back as `cursor` for the next."""
    svc = services()
    try:
        f = _filters()
        sort = check_sort(request.args.get("sort"), params.sorts, params.default)
        token = request.args.get("cursor")
        cursor = Cursor.decode(token, params.sorts) if token else None
        limit = _limit(request.args.get("limit"))
        if cursor is not None and request.args.get("sort") and cursor.sort != sort:
            raise CursorError("sort differs from the cursor's; drop one of them")
        sort = cursor.sort if cursor else sort
        require_one_currency(sort, f.currency, params.sorts)
    except (PeriodError, FilterError, CursorError) as exc:
        return _error(400, "invalid_parameter", str(exc))
    with svc.db.session() as s:
        result = fetch(s, f, sort, cursor, limit)
        body: dict[str, Any] = {
            "object": "list",
            "data": items(s, result),
            "has_more": result.next_cursor is not None,
            "next_cursor": result.next_cursor,
            "previous_cursor": result.prev_cursor,
            "sort": sort,
            "filters": {
                **f.period.as_dict(),
                "currency": f.currency,
                "mode": None if f.livemode is None else ("live" if f.livemode else "test"),
                "provider": f.provider,
            },
        }
        if extra is not None:
            body.update(extra(s, f))
    return jsonify(body)


@bp.get("/recoveries.json")
def recoveries_json() -> Response:
    """The period's ledger rows as JSON, a page at a time."""
    links = dashboard_links(services().providers)
    return _json_list(LEDGER, page, lambda _s, result: [row_dict(r, links) for r in result.rows])


@bp.get("/at-risk.json")
def at_risk_json() -> Response:
    """Open cases now (not limited to the period), a page at a time, with totals per currency."""
    svc = services()
    links, now = dashboard_links(svc.providers), svc.clock.now()

    def totals(s: Any, f: Filters) -> dict[str, Any]:
        return {
            "totals": [
                {"currency": t.currency, "cases": t.cases, "amount_minor": t.amount} for t in at_risk_totals(s, f)
            ]
        }

    return _json_list(AT_RISK, at_risk_page, lambda s, result: at_risk_items(s, result.rows, now, links), totals)


@bp.get("/lost.json")
def lost_json() -> Response:
    """Cases lost in the period, with the reason, a page at a time."""
    links = dashboard_links(services().providers)
    return _json_list(LOST, lost_page, lambda _s, result: lost_items(result.rows, links))


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

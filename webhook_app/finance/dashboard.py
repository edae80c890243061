"""Everything the dashboard template shows, gathered in one read transaction.

`views.dashboard` parses the request; this module runs the queries and shapes their results for
`templates/finance.html`: per-currency figures and charts, at risk now, lost cases, settled money in the
payout currency, and a page of the ledger (one scan of the period's ledger serves both the figures and
the settled totals). The month views are analytics over whole months, on their own page
(`/finance/months`). Links keep the filters and every list's sort, and carry only the cursor of the
list they page, with an anchor back to that list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import url_for
from sqlalchemy.orm import Session

from webhook_app.finance.chart import SERIES, weekly_chart
from webhook_app.finance.cursor import (
    AT_RISK_DEFAULT,
    AT_RISK_SORTS,
    DEFAULT_SORT,
    LOST_DEFAULT,
    LOST_SORTS,
    SORTS,
    Cursor,
    Sorts,
)
from webhook_app.finance.declines import by_decline_class
from webhook_app.finance.display import duration, percent
from webhook_app.finance.lists import at_risk_items, at_risk_page, at_risk_totals, lost_items, lost_page
from webhook_app.finance.paging import Page
from webhook_app.finance.period import Period, presets
from webhook_app.finance.queries import (
    ATTRIBUTION_LABELS,
    ATTRIBUTIONS,
    Filters,
    currencies_in,
    ledger_groups,
    lost_groups,
    page,
    row_dict,
    summarize,
    weekly,
)
from webhook_app.finance.settled import settled_summary
from webhook_app.money import format_amount
from webhook_app.providers import DashboardLink
from webhook_app.providers.base import Provider


@dataclass(frozen=True)
class ListState:
    """A list's sort order and, when paging, its cursor."""

    sort: str
    cursor: Cursor | None = None


@dataclass(frozen=True)
class DashboardLists:
    """The state of the dashboard's three paged lists."""

    ledger: ListState
    at_risk: ListState
    lost: ListState
    page_size: int = 50


@dataclass(frozen=True)
class SortLink:
    """A sortable column header: its URL (None: not sortable now, e.g. amount across currencies) and arrow."""

    url: str | None
    arrow: str
    hint: str | None = None


# (sort parameter, cursor parameter, sorts, default sort, anchor) per list
LISTS: dict[str, tuple[str, str, Sorts, str, str]] = {
    "ledger": ("sort", "cursor", SORTS, DEFAULT_SORT, "ledger-heading"),
    "at_risk": ("risk_sort", "risk_cursor", AT_RISK_SORTS, AT_RISK_DEFAULT, "at-risk-heading"),
    "lost": ("lost_sort", "lost_cursor", LOST_SORTS, LOST_DEFAULT, "lost-heading"),
}


class Links:
    """URLs of the dashboard that keep the filters and every list's sort."""

    def __init__(self, f: Filters, lists: DashboardLists):
        self.args = f.query_args()
        self.currency = f.currency
        self.sorts = {name: getattr(lists, name).sort for name in LISTS}

    def _base(self) -> dict[str, Any]:
        args: dict[str, Any] = dict(self.args)
        for name, (param, _cursor, _sorts, default, _anchor) in LISTS.items():
            if self.sorts[name] != default:
                args[param] = self.sorts[name]
        return args

    def to(self, name: str, *, sort: str | None = None, cursor: str | None = None) -> str:
        """The dashboard with list `name` re-sorted (from its first page) or paged to `cursor`."""
        param, cursor_param, _sorts, default, anchor = LISTS[name]
        args = self._base()
        if sort is not None:
            args.pop(param, None)
            if sort != default:
                args[param] = sort
        if cursor is not None:
            args[cursor_param] = cursor
        return url_for("finance.dashboard", _anchor=anchor, **args)

    def sort(self, name: str, column: str) -> SortLink:
        """A header link: the first click sorts newest / largest / oldest-failure first, the next flips it."""
        _param, _cursor, sorts, _default, _anchor = LISTS[name]
        current = self.sorts[name]
        descending = sorts[current][1]
        ascending_first = column == "failed"  # the longest at risk first
        if sorts[column][0] == "amount" and not self.currency:
            return SortLink(None, "", "Choose one currency to sort by amount")
        if current.lstrip("-") == column:
            target = column if current.startswith("-") else f"-{column}"
            arrow = " ↓" if descending else " ↑"
        else:
            target, arrow = (column if ascending_first else f"-{column}"), ""
        return SortLink(self.to(name, sort=target), arrow)

    def pager(self, name: str, result: Page, state: ListState) -> dict[str, str | None]:
        """First / previous / next links of a list's page."""
        return {
            "first": self.to(name) if state.cursor is not None else None,
            "prev": self.to(name, cursor=result.prev_cursor) if result.prev_cursor else None,
            "next": self.to(name, cursor=result.next_cursor) if result.next_cursor else None,
        }


def _same(a: Period, b: Period) -> bool:
    return a.since == b.since and a.until == b.until


def preset_links(endpoint: str, f: Filters, now: datetime) -> list[tuple[str, str, bool]]:
    """(label, URL, active) of the common periods, on page `endpoint`, keeping the other filters."""
    query = {k: v for k, v in f.query_args().items() if k not in ("since", "until")}
    return [
        (
            label,
            url_for(endpoint, since=p.since_date.isoformat(), until=p.until_date.isoformat(), **query),
            _same(p, f.period),
        )
        for label, p in presets(now)
    ]


def _ledger_table(result: Page, dashboard: DashboardLink) -> list[dict[str, Any]]:
    table = []
    for row in result.rows:
        item = row_dict(row, dashboard)
        item.update(
            amount_display=format_amount(row.amount, row.currency),
            time_to_recover=duration(row.seconds_to_recover),
            attribution_label=ATTRIBUTION_LABELS.get(row.attribution, "—"),
            date=row.recovered_at.strftime("%Y-%m-%d %H:%M"),
            settled_display=None,
        )
        if row.settled_currency and row.settled_amount is not None:
            item.update(
                settled_display=format_amount(row.settled_amount, row.settled_currency),
                fee_display=format_amount(row.settled_fee or 0, row.settled_currency),
                net_display=format_amount(row.settled_net or 0, row.settled_currency),
            )
        table.append(item)
    return table


def dashboard_context(
    session: Session,
    f: Filters,
    lists: DashboardLists,
    now: datetime,
    dashboard: DashboardLink,
    providers: Mapping[str, Provider],
) -> dict[str, Any]:
    """The template's variables for these filters and list states."""
    links = Links(f, lists)
    groups = ledger_groups(session, f)
    lost_in_period = lost_groups(session, f)
    summaries = summarize(session, f, groups, lost_in_period)
    series = weekly(session, f, lost_in_period)
    ledger_page = page(session, f, lists.ledger.sort, lists.ledger.cursor, lists.page_size)
    risk_page = at_risk_page(session, f, lists.at_risk.sort, lists.at_risk.cursor, lists.page_size)
    lost = lost_page(session, f, lists.lost.sort, lists.lost.cursor, lists.page_size)
    return {
        "filters": f,
        "period": f.period,
        "summaries": summaries,
        "charts": {c: weekly_chart(c, weeks) for c, weeks in series.items()},
        "series_labels": SERIES,
        "attributions": [(a, ATTRIBUTION_LABELS[a]) for a in ATTRIBUTIONS],
        "currencies": currencies_in(summaries, f.currency),
        "providers": [(name, p.label) for name, p in providers.items()],
        "presets": preset_links("finance.dashboard", f, now),
        "form_action": url_for("finance.dashboard"),
        "months_url": url_for("finance.months", **f.query_args()),
        "risk_totals": at_risk_totals(session, f),
        "risk_rows": at_risk_items(session, risk_page.rows, now, dashboard),
        "risk_sort": {c: links.sort("at_risk", c) for c in ("failed", "amount")},
        "risk_pager": links.pager("at_risk", risk_page, lists.at_risk),
        "lost_rows": lost_items(lost.rows, dashboard),
        "lost_sort": {c: links.sort("lost", c) for c in ("closed", "amount")},
        "lost_pager": links.pager("lost", lost, lists.lost),
        "settled": settled_summary(session, f, groups),
        "by_decline": by_decline_class(session, f, lost_in_period),
        "rows": _ledger_table(ledger_page, dashboard),
        "ledger_sort": {c: links.sort("ledger", c) for c in ("date", "amount")},
        "ledger_pager": links.pager("ledger", ledger_page, lists.ledger),
        "money": format_amount,
        "duration": duration,
        "percent": percent,
        "now": now,
    }

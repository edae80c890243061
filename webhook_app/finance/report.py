"""`webhook-app report`: the dashboard in the terminal, as a table, CSV or JSON.

Views (`--view`): `summary` (the per-currency figures, time to recover as median and 90th percentile,
and settled money in the payout currency), `at-risk` (open cases now), `lost` (cases lost in the
period), `by-failure-month` and `by-recovery-month` (the two views of the rate).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy.orm import Session

from webhook_app.finance.cursor import AT_RISK_DEFAULT, AT_RISK_SORTS, LOST_DEFAULT, LOST_SORTS, Cursor, Sorts
from webhook_app.finance.display import duration, percent
from webhook_app.finance.lists import at_risk_items, at_risk_page, lost_items, lost_page
from webhook_app.finance.months import by_failure_month, by_recovery_month
from webhook_app.finance.paging import Page
from webhook_app.finance.period import Period, PeriodError, parse_period
from webhook_app.finance.queries import (
    ATTRIBUTION_LABELS,
    ATTRIBUTIONS,
    MAX_PAGE_SIZE,
    CurrencySummary,
    FilterError,
    Filters,
    parse_currency,
    parse_mode,
    parse_provider,
    summarize,
)
from webhook_app.finance.settled import SettledSummary, settled_summary
from webhook_app.money import format_amount
from webhook_app.ops.output import needs_database
from webhook_app.providers import DashboardLink, dashboard_links
from webhook_app.services import services

VIEWS = ("summary", "at-risk", "lost", "by-failure-month", "by-recovery-month")


def align(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Rows of text as aligned columns (right-aligned where asked), a rule under the header."""
    right = right or set()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        cells = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "  ".join(cells).rstrip()

    head = line(header)
    return [head, "-" * len(head), *(line(r) for r in rows)]


def table_lines(period: Period, summaries: list[CurrencySummary], settled: SettledSummary | None = None) -> list[str]:
    """Figures as rows and currencies as columns (currencies are never added together)."""
    lines = [f"Recovery report {period.label} (UTC)"]
    if not summaries:
        return [*lines, "No recoveries, losses or open cases in this period."]
    rows: list[tuple[str, list[str]]] = [
        ("Recovered (net)", [s.money(s.recovered_net) for s in summaries]),
        ("  recovered (gross)", [s.money(s.recovered_gross) for s in summaries]),
        ("  refunds / credit notes", [s.money(s.corrections) for s in summaries]),
        ("Recoveries", [str(s.recoveries) for s in summaries]),
        ("Recovery rate", [percent(s.recovery_rate) for s in summaries]),
        ("  by amount", [percent(s.amount_recovery_rate) for s in summaries]),
        ("Median time to recover", [duration(s.median_seconds) for s in summaries]),
        ("  90th percentile", [duration(s.p90_seconds) for s in summaries]),
        ("Lost", [s.money(s.lost_amount) for s in summaries]),
        ("  lost cases", [str(s.lost_cases) for s in summaries]),
        ("Open at period end", [str(s.open_cases) for s in summaries]),
        ("  amount at risk", [s.money(s.at_risk) for s in summaries]),
    ]
    for name in ATTRIBUTIONS:
        rows.append(
            (
                f"{ATTRIBUTION_LABELS[name]}",
                [f"{s.attribution[name].count} · {s.money(s.attribution[name].amount)}" for s in summaries],
            )
        )
    header = ("", [s.currency.upper() for s in summaries])
    label_w = max(len(label) for label, _ in rows)
    widths = [max(len(values[i]) for _, values in [header, *rows]) for i in range(len(summaries))]

    def line(label: str, values: list[str]) -> str:
        return (
            label.ljust(label_w) + "  " + "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=False))
        ).rstrip()

    lines.append(line(*header))
    lines.append("-" * len(line(*header)))
    lines.extend(line(label, values) for label, values in rows)
    if settled is not None:
        lines.extend(settled_lines(settled))
    return lines


def settled_lines(settled: SettledSummary) -> list[str]:
    """Settled money per payout currency (these add up across invoice currencies: Stripe converted them)."""
    lines = ["", "Settled in the payout currency (balance transactions of the period's recoveries)"]
    if settled.totals:
        rows = [
            [
                t.currency.upper(),
                t.money(t.amount),
                t.money(t.fee),
                t.money(t.net),
                str(t.recoveries),
                ", ".join(c.upper() for c in t.invoice_currencies),
            ]
            for t in settled.totals
        ]
        lines.extend(align(["Payout", "Gross", "Fees", "Net", "Recoveries", "Invoiced in"], rows, {1, 2, 3, 4}))
    else:
        lines.append("No settled figures yet.")
    if settled.without:
        lines.append("Recoveries not included: " + "; ".join(settled.without_lines()) + ".")
    return lines


def report_rows(period: Period, summaries: list[CurrencySummary]) -> list[dict[str, Any]]:
    """One dict per currency: the period, then every figure (minor units and decimals)."""
    return [{"since": period.as_dict()["since"], "until": period.as_dict()["until"], **s.as_dict()} for s in summaries]


def every_page(fetch: Callable[[Cursor | None], Page], sorts: Sorts) -> Iterator[Any]:
    """All rows of a keyset-paged list (whose sorts are `sorts`), a page at a time."""
    cursor: Cursor | None = None
    while True:
        result = fetch(cursor)
        yield from result.rows
        if result.next_cursor is None:
            return
        cursor = Cursor.decode(result.next_cursor, sorts)


def list_rows(session: Session, f: Filters, view: str, now: datetime, dashboard: DashboardLink) -> list[dict[str, Any]]:
    """The rows of a list or month view as plain values (the JSON fields)."""
    if view == "at-risk":
        rows = list(every_page(lambda c: at_risk_page(session, f, AT_RISK_DEFAULT, c, MAX_PAGE_SIZE), AT_RISK_SORTS))
        return at_risk_items(session, rows, now, dashboard)
    if view == "lost":
        rows = list(every_page(lambda c: lost_page(session, f, LOST_DEFAULT, c, MAX_PAGE_SIZE), LOST_SORTS))
        return lost_items(rows, dashboard)
    months = by_failure_month(session, f) if view == "by-failure-month" else by_recovery_month(session, f)
    return [m.as_dict() for cells in months.values() for m in cells]


def list_table(view: str, rows: list[dict[str, Any]]) -> list[str]:
    """A list or month view as aligned text columns."""
    if not rows:
        return ["Nothing to show."]

    def money(r: dict[str, Any], name: str = "amount") -> str:
        return format_amount(r[f"{name}_minor"], r["currency"])

    def rate(value: float | None) -> str:
        return percent(value)

    if view == "at-risk":
        header = ["Customer", "Email", "Invoice", "Amount", "Days", "Sent", "Last click", "Next step", "When"]
        body = [
            [
                r["customer_name"] or r["customer_id"],
                r["customer_email"] or "",
                r["invoice_number"] or r["invoice_id"],
                money(r),
                str(r["days_since_first_failure"]),
                str(r["messages_sent"]),
                (r["last_click_at"] or "—")[:16].replace("T", " "),
                r["next_step"],
                (r["next_step_at"] or "")[:16].replace("T", " "),
            ]
            for r in rows
        ]
        return align(header, body, {3, 4, 5})
    if view == "lost":
        header = ["Closed", "Customer", "Email", "Invoice", "Amount", "Reason"]
        body = [
            [
                r["closed_at"][:10],
                r["customer_name"] or r["customer_id"],
                r["customer_email"] or "",
                r["invoice_number"] or r["invoice_id"],
                money(r),
                r["reason"],
            ]
            for r in rows
        ]
        return align(header, body, {4})
    if view == "by-failure-month":
        header = ["Month", "Cur", "Failed", "Recovered", "Lost", "Still open", "Rate", "Median", "P90"]
        body = [
            [
                r["month"],
                r["currency"].upper(),
                str(r["failed"]),
                str(r["recovered"]),
                str(r["lost"]),
                str(r["still_open"]),
                rate(r["recovery_rate"]),
                duration(r["median_seconds_to_recover"]),
                duration(r["p90_seconds_to_recover"]),
            ]
            for r in rows
        ]
        return align(header, body, {2, 3, 4, 5, 6, 7, 8})
    header = ["Month", "Cur", "Recovered", "Amount", "Lost", "Lost amount", "Rate", "Median", "P90"]
    body = [
        [
            r["month"],
            r["currency"].upper(),
            str(r["recoveries"]),
            money(r, "recovered_amount"),
            str(r["lost"]),
            money(r, "lost_amount"),
            rate(r["recovery_rate"]),
            duration(r["median_seconds_to_recover"]),
            duration(r["p90_seconds_to_recover"]),
        ]
        for r in rows
    ]
    return align(header, body, {2, 3, 4, 5, 6, 7, 8})


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@click.command("report")
@click.option("--since", help="First day (YYYY-MM-DD, UTC) or ISO 8601 time. Default: 90 days ago.")
@click.option("--until", help="Last day, inclusive (YYYY-MM-DD, UTC) or an exclusive ISO 8601 time. Default: today.")
@click.option("--currency", help="Only this currency (e.g. usd). Default: every currency, separately.")
@click.option("--provider", help="Only this billing provider (e.g. stripe). Default: all.")
@click.option(
    "--mode",
    type=click.Choice(["all", "live", "test"]),
    default="all",
    show_default=True,
    help="Live-mode or test-mode data.",
)
@click.option(
    "--view",
    type=click.Choice(VIEWS),
    default="summary",
    show_default=True,
    help="The figures, or a list: open cases now, lost cases, or the rate by month of first failure / of recovery.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@with_appcontext
@needs_database
def report_command(
    since: str | None, until: str | None, currency: str | None, provider: str | None, mode: str, view: str, fmt: str
) -> None:
    """Recovered revenue per currency for a period, what is at risk and what was lost: the /finance dashboard."""
    svc = services()
    now = svc.clock.now()
    try:
        filters = Filters(
            parse_period(since, until, now),
            parse_currency(currency),
            parse_mode(mode),
            parse_provider(provider, svc.providers),
        )
    except (PeriodError, FilterError) as exc:
        raise click.BadParameter(str(exc)) from None
    if view != "summary":
        with svc.db.session() as s:
            rows = list_rows(s, filters, view, now, dashboard_links(svc.providers))
        if fmt == "json":
            click.echo(json.dumps({"view": view, "period": filters.period.as_dict(), "data": rows}, indent=2))
        elif fmt == "csv":
            click.echo(_csv(rows, list(rows[0]) if rows else []), nl=False)
        else:
            click.echo(f"{view.replace('-', ' ').capitalize()} {filters.period.label} (UTC)")
            for text in list_table(view, rows):
                click.echo(text)
        return
    with svc.db.session() as s:
        summaries = summarize(s, filters)
        settled = settled_summary(s, filters)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "period": filters.period.as_dict(),
                    "currency": filters.currency,
                    "provider": filters.provider,
                    "currencies": [s.as_dict() for s in summaries],
                    "settled": settled.as_dict(),
                },
                indent=2,
            )
        )
    elif fmt == "csv":
        rows = report_rows(filters.period, summaries)
        fields = list(rows[0]) if rows else ["since", "until", *CurrencySummary("usd").as_dict()]
        click.echo(_csv(rows, fields), nl=False)
    else:
        for text in table_lines(filters.period, summaries, settled):
            click.echo(text)

"""`webhook-app report`: the dashboard's figures in the terminal, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

import click
from flask.cli import with_appcontext

from webhook_app.finance.display import duration, percent
from webhook_app.finance.period import Period, PeriodError, parse_period
from webhook_app.finance.queries import (
    ATTRIBUTION_LABELS,
    ATTRIBUTIONS,
    CurrencySummary,
    FilterError,
    Filters,
    parse_currency,
    parse_mode,
    parse_provider,
    summarize,
)
from webhook_app.services import services


def table_lines(period: Period, summaries: list[CurrencySummary]) -> list[str]:
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
    return lines


def report_rows(period: Period, summaries: list[CurrencySummary]) -> list[dict]:
    """One dict per currency: the period, then every figure (minor units and decimals)."""
    return [{"since": period.as_dict()["since"], "until": period.as_dict()["until"], **s.as_dict()} for s in summaries]


@click.command("report")
@click.option("--since", help="First day (YYYY-MM-DD, UTC) or ISO 8601 time. Default: 90 days ago.")
@click.option("--until", help="Last day, inclusive (YYYY-MM-DD, UTC) or an exclusive ISO 8601 time. Default: today.")
@click.option("--currency", help="Only this currency (e.g. usd). Default: every currency, separately.")
@click.option(
    "--mode",
    type=click.Choice(["all", "live", "test"]),
    default="all",
    show_default=True,
    help="Live-mode or test-mode data.",
)
@click.option("--provider", help="Only this billing provider (e.g. chargebee). Default: every provider.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@with_appcontext
def report_command(
    since: str | None, until: str | None, currency: str | None, mode: str, provider: str | None, fmt: str
) -> None:
    """Recovered revenue per currency for a period: the numbers of the /finance dashboard."""
    svc = services()
    try:
        filters = Filters(
            parse_period(since, until, svc.clock.now()),
            parse_currency(currency),
            parse_mode(mode),
            parse_provider(provider, svc.providers),
        )
    except (PeriodError, FilterError) as exc:
        raise click.BadParameter(str(exc)) from None
    with svc.db.session() as s:
        summaries = summarize(s, filters)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "period": filters.period.as_dict(),
                    "currency": filters.currency,
                    "provider": filters.provider,
                    "currencies": [s.as_dict() for s in summaries],
                },
                indent=2,
            )
        )
    elif fmt == "csv":
        rows = report_rows(filters.period, summaries)
        fields = list(rows[0]) if rows else ["since", "until", *CurrencySummary("usd").as_dict()]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    else:
        for text in table_lines(filters.period, summaries):
            click.echo(text)

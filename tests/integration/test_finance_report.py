"""`webhook-app report`: the dashboard's numbers in the terminal, as a table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.integration.test_finance_dataset import (
    DAY,
    EXPECTED_AT_RISK,
    EXPECTED_LOST_Q2,
    EXPECTED_Q2,
    EXPECTED_SETTLED_MISSING_Q2,
    NOW,
    seed,
)
from webhook_app.clock import FrozenClock


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def report(app):
    seed(app.extensions["webhook_app"].db)
    runner = app.test_cli_runner()

    def _run(*args: str):
        result = runner.invoke(args=["report", *args])
        return result

    return _run


def test_json_report_has_the_known_figures_per_currency(report):
    result = report("--since", "2025-04-01", "--until", "2025-06-30", "--format", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["period"] == {"since": "2025-04-01T00:00:00Z", "until": "2025-07-01T00:00:00Z"}
    by = {c["currency"]: c for c in body["currencies"]}
    assert list(by) == ["eur", "jpy", "usd"]
    for currency, expected in EXPECTED_Q2.items():
        got = by[currency]
        assert got["recovered_net_minor"] == expected["recovered_net"]
        assert got["recovered_gross_minor"] == expected["recovered_gross"]
        assert got["corrections_minor"] == expected["corrections"]
        assert got["recoveries"] == expected["recoveries"]
        assert (got["lost_cases"], got["lost_minor"]) == (expected["lost_cases"], expected["lost_amount"])
        assert (got["open_cases"], got["at_risk_minor"]) == (expected["open_cases"], expected["at_risk"])
        assert got["recovery_rate"] == pytest.approx(expected["recovery_rate"], abs=1e-4)
        assert got["median_seconds_to_recover"] == expected["median_seconds"]
        for name, (count, amount) in expected["attribution"].items():
            assert (got[f"{name}_count"], got[f"{name}_amount_minor"]) == (count, amount)
    assert (by["usd"]["recovered_net"], by["jpy"]["recovered_net"]) == ("43.00", "15800")


def test_csv_report_is_one_row_per_currency(report):
    result = report("--since", "2025-04-01", "--until", "2025-06-30", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["currency"] for r in rows] == ["eur", "jpy", "usd"]
    usd = rows[2]
    assert (usd["since"], usd["until"]) == ("2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z")
    assert (usd["recovered_net_minor"], usd["recovered_net"], usd["lost"], usd["recovery_rate"]) == (
        "4300",
        "43.00",
        "100.00",
        "0.6",
    )


def test_table_report_puts_currencies_in_columns_and_formats_money(report):
    result = report("--since", "2025-04-01", "--until", "2025-06-30")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Recovery report 2025-04-01 – 2025-06-30 (UTC)"
    assert lines[1].split() == ["EUR", "JPY", "USD"]
    row = {line[:26].strip(): line[26:].split() for line in lines[3:]}
    assert row["Recovered (net)"] == ["€12.50", "¥15,800", "$43.00"]
    assert row["Recovery rate"] == ["100.0%", "75.0%", "60.0%"]
    assert row["Median time to recover"] == ["2h", "3d", "2d"]
    assert row["Lost"] == ["€0.00", "¥3,000", "$100.00"]
    assert row["amount at risk"] == ["€0.00", "¥4,000", "$40.00"]


def test_report_defaults_to_the_last_90_days_and_filters_by_currency(report):
    result = report("--currency", "jpy", "--format", "json")
    body = json.loads(result.output)
    assert body["period"] == {"since": "2025-04-02T00:00:00Z", "until": "2025-07-01T00:00:00Z"}
    assert [c["currency"] for c in body["currencies"]] == ["jpy"]


def test_report_rejects_a_bad_period_with_a_clear_message(report):
    result = report("--since", "last tuesday")
    assert result.exit_code == 2
    assert "since must be a date" in result.output


def test_report_for_an_empty_period_says_so(report):
    result = report("--since", "2024-01-01", "--until", "2024-01-31")
    assert result.exit_code == 0 and "No recoveries, losses or open cases in this period." in result.output
    empty_csv = report("--since", "2024-01-01", "--until", "2024-01-31", "--format", "csv")
    assert empty_csv.output.startswith("since,until,currency,recovered_net_minor")


def test_report_filters_by_billing_provider_and_names_the_known_ones(report):
    everything = json.loads(report("--since", "2025-04-01", "--until", "2025-06-30", "--format", "json").output)
    stripe = report("--since", "2025-04-01", "--until", "2025-06-30", "--provider", "stripe", "--format", "json")
    chargebee = report("--since", "2025-04-01", "--until", "2025-06-30", "--provider", "chargebee", "--format", "json")
    assert json.loads(stripe.output)["currencies"] == everything["currencies"]  # the seeded rows are Stripe's
    assert json.loads(stripe.output)["provider"] == "stripe"
    assert json.loads(chargebee.output)["currencies"] == []
    unknown = report("--provider", "paypal")
    assert unknown.exit_code != 0 and "provider must be one of" in unknown.output and "chargebee" in unknown.output


def test_summary_report_gives_the_90th_percentile_and_settled_money_in_the_payout_currency(report):
    result = report("--since", "2025-04-01", "--until", "2025-06-30")
    lines = result.output.splitlines()
    row = {line[:26].strip(): line[26:].split() for line in lines[3:16]}
    assert row["90th percentile"] == ["2h", "4d", "14h", "3d", "14h"]  # JPY 1d, 3d, 5d; USD 1d, 2d, 4d -> 3.6d
    settled = lines[lines.index("Settled in the payout currency (balance transactions of the period's recoveries)") :]
    assert settled[3].split() == ["USD", "$278.20", "$9.56", "$268.64", "5", "EUR,", "JPY,", "USD"]
    assert settled[4] == "Recoveries not included: 1 paid outside the provider; 1 still being looked up."
    body = json.loads(report("--since", "2025-04-01", "--until", "2025-06-30", "--format", "json").output)
    [usd] = body["settled"]["totals"]
    assert (usd["payout_currency"], usd["settled_net_minor"], usd["settled_net"]) == ("usd", 26864, "268.64")
    assert body["settled"]["recoveries_without_settlement"] == EXPECTED_SETTLED_MISSING_Q2
    assert {c["currency"]: c["p90_seconds_to_recover"] for c in body["currencies"]}["usd"] == round(3.6 * DAY)


def test_at_risk_view_lists_open_cases_with_emails_and_invoice_numbers(report):
    rows = list(csv.DictReader(io.StringIO(report("--view", "at-risk", "--format", "csv").output)))
    got = [(r["invoice_id"], r["invoice_number"], r["customer_email"], r["next_step"]) for r in rows]
    assert got == [(e[0], e[1], e[2], e[8]) for e in EXPECTED_AT_RISK]
    assert rows[1]["invoice_url"] == "https://dashboard.stripe.com/test/invoices/in_uo1"
    table = report("--view", "at-risk", "--currency", "usd").output.splitlines()
    assert table[1].split()[:3] == ["Customer", "Email", "Invoice"]
    assert "grace.hopper@example.com" in table[4] and "INV-UO1" in table[4] and "Reminder 2" in table[4]


def test_lost_and_month_views_carry_the_reason_and_both_rates(report):
    lost = json.loads(
        report("--view", "lost", "--since", "2025-04-01", "--until", "2025-06-30", "--format", "json").output
    )
    assert [(r["invoice_id"], r["reason"]) for r in lost["data"]] == [(e[0], e[1]) for e in EXPECTED_LOST_Q2]
    months = json.loads(
        report(
            "--view",
            "by-failure-month",
            "--currency",
            "jpy",
            "--since",
            "2025-04-01",
            "--until",
            "2025-06-30",
            "--format",
            "json",
        ).output
    )
    may = next(m for m in months["data"] if m["month"] == "2025-05")
    assert (may["failed"], may["recovered"], may["still_open"], may["recovery_rate"]) == (1, 1, 0, 1.0)
    table = report("--view", "by-recovery-month", "--currency", "jpy", "--since", "2025-04-01", "--until", "2025-06-30")
    june = next(line for line in table.output.splitlines() if line.startswith("2025-06"))
    assert june.split() == ["2025-06", "JPY", "2", "¥12,800", "0", "¥0", "100.0%", "3d", "4d", "14h"]

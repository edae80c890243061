"""Finance building blocks without a database: periods, cursors, auth, the chart layout, formatting."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from werkzeug.datastructures import Authorization

from webhook_app.config import Settings, load_settings
from webhook_app.finance import auth
from webhook_app.finance.chart import axis_label, nice_step, weekly_chart
from webhook_app.finance.cursor import Cursor, CursorError, check_sort
from webhook_app.finance.display import duration, percent
from webhook_app.finance.period import PeriodError, parse_period, presets
from webhook_app.finance.queries import FilterError, Week, parse_currency, parse_mode
from webhook_app.providers.stripe import StripeProvider

NOW = datetime(2025, 6, 30, 12, 0)


# -- periods ---------------------------------------------------------------------------------------
def test_dates_are_whole_utc_days_and_until_is_inclusive():
    p = parse_period("2025-04-01", "2025-04-30", NOW)
    assert (p.since, p.until) == (datetime(2025, 4, 1), datetime(2025, 5, 1))
    assert (p.since_date, p.until_date) == (date(2025, 4, 1), date(2025, 4, 30))


def test_iso_times_are_exact_instants_converted_to_utc():
    p = parse_period("2025-04-01T09:30:00+02:00", "2025-04-02T00:00:00Z", NOW)
    assert (p.since, p.until) == (datetime(2025, 4, 1, 7, 30), datetime(2025, 4, 2))


def test_one_missing_bound_is_filled_in():
    assert parse_period("2025-06-01", None, NOW).until == datetime(2025, 7, 1)
    assert parse_period(None, "2025-03-31", NOW).since == datetime(2025, 1, 1)


@pytest.mark.parametrize(
    "since, until", [("2025-02-30", None), ("soon", None), ("2025-05-01", "2025-04-01"), ("1999-12-31", None)]
)
def test_bad_periods_raise_a_readable_error(since, until):
    with pytest.raises(PeriodError):
        parse_period(since, until, NOW)


def test_presets_cover_common_finance_periods():
    named = {label: (p.since_date.isoformat(), p.until_date.isoformat()) for label, p in presets(NOW)}
    assert named["Last 30 days"] == ("2025-06-01", "2025-06-30")
    assert named["This month"] == ("2025-06-01", "2025-06-30")
    assert named["Last month"] == ("2025-05-01", "2025-05-31")
    assert named["Year to date"] == ("2025-01-01", "2025-06-30")
    jan = {label: p for label, p in presets(datetime(2025, 1, 15))}
    assert (jan["Last month"].since, jan["Last month"].until) == (datetime(2024, 12, 1), datetime(2025, 1, 1))


# -- cursors and filters ------------------------------------------------------------------------------
def test_cursors_round_trip_and_are_opaque():
    for cursor in (Cursor("-date", datetime(2025, 4, 10, 10), 42), Cursor("amount", -2500, 7, forward=False)):
        token = cursor.encode()
        assert "=" not in token and "date" not in token
        assert Cursor.decode(token) == cursor


@pytest.mark.parametrize("token", ["", "abc", "eyJzIjoiLWRhdGUifQ", Cursor("amount", 5, 1).encode()[:-3]])
def test_tampered_cursors_are_refused(token):
    with pytest.raises(CursorError):
        Cursor.decode(token)


def test_sort_and_filter_parameters_are_validated():
    assert check_sort(None) == "-date"
    with pytest.raises(CursorError):
        check_sort("customer_id")
    assert parse_currency("JPY") == "jpy" and parse_currency("all") is None and parse_currency("") is None
    with pytest.raises(FilterError):
        parse_currency("us dollars")
    assert (parse_mode("live"), parse_mode("test"), parse_mode(None)) == (True, False, None)


def test_stripe_dashboard_links_use_test_paths_for_test_mode():
    stripe = StripeProvider(Settings())
    assert stripe.dashboard_url("invoice", "in_1", False) == "https://dashboard.stripe.com/test/invoices/in_1"
    assert stripe.dashboard_url("customer", "cus_1", True) == "https://dashboard.stripe.com/customers/cus_1"


# -- auth ----------------------------------------------------------------------------------------------
def test_basic_auth_needs_both_parts_right():
    settings = load_settings({"FINANCE_USERNAME": "fin", "FINANCE_PASSWORD": "pw"})
    ok = Authorization("basic", {"username": "fin", "password": "pw"})
    assert auth.credentials_ok(ok, settings)
    for user, password in (("fin", "PW"), ("FIN", "pw"), ("", ""), ("fin", "pw ")):
        assert not auth.credentials_ok(Authorization("basic", {"username": user, "password": password}), settings)
    assert not auth.credentials_ok(None, settings)
    assert not auth.credentials_ok(Authorization("bearer", token="pw"), settings)


def test_finance_is_off_unless_both_credentials_are_set():
    assert not auth.finance_enabled(load_settings({}))
    assert not auth.finance_enabled(load_settings({"FINANCE_USERNAME": "fin"}))
    assert auth.finance_enabled(load_settings({"FINANCE_USERNAME": "fin", "FINANCE_PASSWORD": "pw"}))
    assert auth.challenge_header() == 'Basic realm="Finance", charset="UTF-8"'


# -- chart ------------------------------------------------------------------------------------------
def test_chart_bars_scale_to_a_round_axis_and_skip_zero_values():
    weeks = [
        Week(date(2025, 4, 7), recovered=4900),
        Week(date(2025, 4, 14), lost=3000, corrections=-2500),
        Week(date(2025, 4, 21)),
    ]
    chart = weekly_chart("usd", weeks)
    assert [b.css for b in chart.bars] == ["bar-recovered", "bar-refunded", "bar-lost"]
    assert [t.text for t in chart.y_ticks] == ["$0", "$20", "$40", "$60"]
    tallest = chart.bars[0]
    assert tallest.y + tallest.height == chart.baseline
    assert tallest.height == pytest.approx((chart.baseline - 14) * 4900 / 6000, abs=0.01)
    assert tallest.title == "Week of 2025-04-07: recovered $49.00"
    assert chart.totals == {"recovered": "$49.00", "refunded": "$25.00", "lost": "$30.00"}
    assert [label.text for label in chart.x_labels] == ["Apr 7", "Apr 14", "Apr 21"]
    assert not chart.empty


def test_chart_in_yen_has_whole_yen_ticks_and_an_empty_chart_says_so():
    chart = weekly_chart("jpy", [Week(date(2025, 6, 2), recovered=12000)])
    assert [t.text for t in chart.y_ticks] == ["¥0", "¥5,000", "¥10,000", "¥15,000"]
    assert weekly_chart("jpy", [Week(date(2025, 6, 2))]).empty


def test_long_periods_thin_out_the_week_labels():
    weeks = [Week(date(2024, 1, 1)) for _ in range(53)]
    assert len(weekly_chart("usd", weeks).x_labels) <= 9


@pytest.mark.parametrize("value, step", [(0, 1), (3, 1), (4900, 2000), (12000, 5000), (10000, 2500)])
def test_nice_steps(value, step):
    assert nice_step(value) == step


def test_axis_labels_drop_zero_decimals_only():
    assert (axis_label(250000, "usd"), axis_label(1250, "usd"), axis_label(1500, "kwd")) == (
        "$2,500",
        "$12.50",
        "KWD 1.500",
    )


# -- formatting -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "—"),
        (30, "under a minute"),
        (720, "12m"),
        (7200, "2h"),
        (11100, "3h 5m"),
        (172800, "2d"),
        (187200, "2d 4h"),
    ],
)
def test_durations_read_like_a_person_would_say_them(seconds, text):
    assert duration(seconds) == text


def test_percent():
    assert (percent(None), percent(0.6), percent(16800 / 26800)) == ("—", "60.0%", "62.7%")

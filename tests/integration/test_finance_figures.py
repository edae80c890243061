"""Every finance figure on the seeded data set, on SQLite and PostgreSQL, against hand-worked answers."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tests.integration.test_finance_dataset import EXPECTED_Q2, NOW, seed
from webhook_app.clock import FrozenClock
from webhook_app.finance.period import parse_period
from webhook_app.finance.queries import Filters, summarize, weekly


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def seeded(svc):
    seed(svc.db)
    return svc


def figures(svc, since: str, until: str, currency: str | None = None, livemode: bool | None = None) -> dict:
    f = Filters(parse_period(since, until, NOW), currency, livemode)
    with svc.db.session() as s:
        return {x.currency: x for x in summarize(s, f)}


def test_q2_figures_per_currency_match_the_known_answers(seeded):
    result = figures(seeded, "2025-04-01", "2025-06-30")
    assert list(result) == ["eur", "jpy", "usd"]  # never added together: one summary per currency
    for currency, expected in EXPECTED_Q2.items():
        s = result[currency]
        for name, value in expected.items():
            if name == "attribution":
                got = {k: (a.count, a.amount) for k, a in s.attribution.items()}
                assert got == value, currency
            elif isinstance(value, float):
                assert getattr(s, name) == pytest.approx(value), (currency, name)
            else:
                assert getattr(s, name) == value, (currency, name)
    assert result["usd"].lost_by_status == {"void": 1, "uncollectible": 1}


def test_a_refund_lands_in_the_month_it_was_given_back_so_closed_months_never_change(seeded):
    march = figures(seeded, "2025-03-01", "2025-03-31")["usd"]
    assert (march.recovered_gross, march.corrections, march.recovered_net) == (10000, 0, 10000)
    assert (march.lost_cases, march.lost_amount) == (1, 5000)  # canceled on 03-01 00:00: first instant counts
    april = figures(seeded, "2025-04-01", "2025-04-30")["usd"]
    # April: $49 recovered, March's $100 recovery refunded: net negative, and that is the truth.
    assert (april.recovered_gross, april.corrections, april.recovered_net) == (4900, -10000, -5100)


def test_open_cases_are_those_not_settled_at_the_end_of_the_period(seeded):
    april = figures(seeded, "2025-04-01", "2025-04-30")
    # in_ul1 failed 04-20 and was voided 05-10: open (at risk) on 05-01; in_jl1 failed 04-29, canceled 05-20.
    assert (april["usd"].open_cases, april["usd"].at_risk) == (1, 3000)
    assert (april["jpy"].open_cases, april["jpy"].at_risk) == (1, 3000)
    may21 = figures(seeded, "2025-05-01", "2025-05-20")["usd"]
    # On 05-21 the error case (failed 05-20, closed 05-22) was still unsettled; in_ul1 was voided on 05-10.
    assert (may21.open_cases, may21.at_risk) == (1, 600)


def test_median_of_an_even_number_of_recoveries_is_the_mean_of_the_middle_two(seeded):
    usd = figures(seeded, "2025-04-01", "2025-05-31")["usd"]
    assert usd.recoveries == 2
    assert usd.median_seconds == pytest.approx((2 * 86400 + 86400) / 2)


def test_currency_and_mode_filters(seeded):
    assert list(figures(seeded, "2025-04-01", "2025-06-30", currency="jpy")) == ["jpy"]
    live = figures(seeded, "2025-04-01", "2025-06-30", livemode=True)
    assert list(live) == ["eur"] and live["eur"].recovered_net == 1250
    test_mode = figures(seeded, "2025-04-01", "2025-06-30", livemode=False)
    assert sorted(test_mode) == ["jpy", "usd"]


def test_an_empty_period_has_no_figures(seeded):
    assert figures(seeded, "2024-01-01", "2024-01-31") == {}


def test_weekly_series_buckets_by_monday_weeks_per_currency(seeded):
    f = Filters(parse_period("2025-04-01", "2025-06-30", NOW))
    with seeded.db.session() as s:
        series = weekly(s, f)
    assert list(series) == ["eur", "jpy", "usd"]
    usd = {w.start: w for w in series["usd"]}
    assert len(series["usd"]) == 14 and series["usd"][0].start == date(2025, 3, 31)
    assert all(w.start.weekday() == 0 for w in series["usd"])
    assert usd[date(2025, 3, 31)].corrections == -10000  # Saturday 04-05
    assert usd[date(2025, 4, 7)].recovered == 4900
    assert (usd[date(2025, 5, 5)].recovered, usd[date(2025, 5, 5)].lost) == (9900, 3000)  # Monday and Saturday
    assert usd[date(2025, 5, 26)].corrections == -2500  # Sunday 06-01 belongs to the week before
    assert usd[date(2025, 6, 9)].lost == 7000  # Sunday 06-15
    assert usd[date(2025, 6, 16)].recovered == 2000
    assert sum(w.recovered for w in series["usd"]) == EXPECTED_Q2["usd"]["recovered_gross"]
    assert sum(w.lost for w in series["jpy"]) == 3000
    assert sum(w.corrections for w in series["jpy"]) == -2000


def test_period_defaults_to_the_last_90_days_including_today():
    p = parse_period(None, None, NOW)
    assert (p.since, p.until) == (datetime(2025, 4, 2), datetime(2025, 7, 1))
    assert p.label == "2025-04-02 – 2025-06-30"

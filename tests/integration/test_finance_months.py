"""The two views of the rate by month, time to recover as median and 90th percentile, and settled
totals in the payout currency: on the seeded data set, on SQLite and PostgreSQL, against hand-worked answers."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from tests.integration.test_finance_dataset import (
    DAY,
    EXPECTED_BY_FAILURE_Q2,
    EXPECTED_BY_RECOVERY_Q2,
    EXPECTED_SETTLED_MISSING_Q2,
    EXPECTED_SETTLED_Q2,
    NOW,
    seed,
)
from webhook_app.clock import FrozenClock
from webhook_app.finance.months import by_failure_month, by_recovery_month, month_span
from webhook_app.finance.period import parse_period
from webhook_app.finance.queries import Filters, summarize
from webhook_app.finance.settled import settled_summary
from webhook_app.finance.stats import interpolate
from webhook_app.models import DunningCase, LedgerEntry


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def seeded(svc):
    seed(svc.db)
    return svc


def rounded(cells: dict) -> dict:
    """Month -> tuple with floats rounded (percentiles come back as floats from either database)."""
    return {m: tuple(round(v, 6) if isinstance(v, float) else v for v in values) for m, values in cells.items()}


def q2(currency: str | None = None) -> Filters:
    return Filters(parse_period("2025-04-01", "2025-06-30", NOW), currency)


def test_by_month_of_first_failure_counts_each_cohort_and_rates_only_finished_cases(seeded):
    with seeded.db.session() as s:
        result = by_failure_month(s, q2())
    assert list(result) == ["eur", "jpy", "usd"]
    for currency, months in EXPECTED_BY_FAILURE_Q2.items():
        got = {
            m.month: (m.failed, m.recovered, m.lost, m.still_open, m.rate, m.median_seconds, m.p90_seconds)
            for m in result[currency]
        }
        assert rounded(got) == rounded(months), currency
    june_jpy = result["jpy"][2]
    # in_jo1 is still open: shown apart, not counted as lost, so June's rate is 1 of 1 finished.
    assert (june_jpy.still_open, june_jpy.open_amount, june_jpy.finished) == (1, 4000, 1)
    may_usd = result["usd"][1]
    assert may_usd.other == 1  # in_uerr: closed because Stripe no longer knew it, neither won nor lost


def test_a_recovery_paid_the_month_after_its_failure_counts_in_each_view_under_its_own_month(seeded):
    with seeded.db.session() as s:
        failure = {m.month: m for m in by_failure_month(s, q2("jpy"))["jpy"]}
        recovery = {m.month: m for m in by_recovery_month(s, q2("jpy"))["jpy"]}
    # in_j2 failed on 05-28, was still open at the end of May and was paid on 06-02.
    assert (failure[date(2025, 5, 1)].recovered, failure[date(2025, 5, 1)].recovered_amount) == (1, 12000)
    assert recovery[date(2025, 5, 1)].recoveries == 0 and recovery[date(2025, 5, 1)].rate == 0.0
    assert (recovery[date(2025, 6, 1)].recoveries, recovery[date(2025, 6, 1)].recovered_amount) == (2, 12800)


def test_by_month_of_recovery_sets_each_months_payments_against_its_losses(seeded):
    with seeded.db.session() as s:
        result = by_recovery_month(s, q2())
    for currency, months in EXPECTED_BY_RECOVERY_Q2.items():
        got = {
            m.month: (m.recoveries, m.recovered_amount, m.lost, m.lost_amount, m.rate, m.median_seconds, m.p90_seconds)
            for m in result[currency]
        }
        assert rounded(got) == rounded(months), currency


def test_month_views_cover_every_whole_month_the_period_touches(seeded):
    f = Filters(parse_period("2025-05-20", "2025-06-03", NOW), "usd")
    span, months = month_span(f.period)
    assert (span.since, span.until) == (datetime(2025, 5, 1), datetime(2025, 7, 1))
    assert months == [date(2025, 5, 1), date(2025, 6, 1)]
    with seeded.db.session() as s:
        failure = by_failure_month(s, f)["usd"]
    assert [m.month for m in failure] == months
    assert failure[1].failed == 4  # all of June, not only 06-01 .. 06-03


def test_the_period_summary_gives_the_90th_percentile_beside_the_median(seeded):
    with seeded.db.session() as s:
        jpy = {x.currency: x for x in summarize(s, q2())}["jpy"]
    # Q2 JPY recoveries took 1d, 3d and 5d: the median is 3d, the 90th percentile 3d + 0.8 x 2d = 4.6d.
    assert (jpy.median_seconds, jpy.p90_seconds) == pytest.approx((3 * DAY, 4.6 * DAY))
    assert jpy.as_dict()["p90_seconds_to_recover"] == round(4.6 * DAY)


def test_percentiles_interpolate_like_postgresql_on_both_databases(svc):
    """Ten recoveries of 1..10 hours and one of 100: same median and 90th percentile on either database."""
    start = datetime(2025, 1, 6)
    hours = [*range(1, 11), 100]
    with svc.db.session() as s:
        for i, h in enumerate(hours):
            s.add(
                LedgerEntry(
                    provider="stripe",
                    entry_key=f"recovery:in_p{i}",
                    kind="recovery",
                    invoice_id=f"in_p{i}",
                    customer_id="cus_p",
                    amount=100,
                    currency="usd",
                    livemode=False,
                    first_failed_at=start,
                    recovered_at=start + timedelta(hours=h),
                    seconds_to_recover=h * 3600,
                    attempts=1,
                    messages_sent=1,
                    created_at=start,
                )
            )
    with svc.db.session() as s:
        usd = summarize(s, Filters(parse_period("2025-01-01", "2025-01-31", NOW)))[0]
    expected = [h * 3600 for h in sorted(hours)]
    assert usd.median_seconds == interpolate(expected, 0.5) == 6 * 3600
    assert usd.p90_seconds == pytest.approx(interpolate(expected, 0.9)) == 10 * 3600


def test_settled_totals_add_up_across_invoice_currencies_in_the_payout_currency(seeded):
    with seeded.db.session() as s:
        summary = settled_summary(s, q2())
    assert [t.currency for t in summary.totals] == list(EXPECTED_SETTLED_Q2)
    for total in summary.totals:
        expected = EXPECTED_SETTLED_Q2[total.currency]
        got = dict(
            recoveries=total.recoveries,
            amount=total.amount,
            fee=total.fee,
            net=total.net,
            invoice_currencies=total.invoice_currencies,
        )
        assert got == expected
    assert summary.without == EXPECTED_SETTLED_MISSING_Q2  # counted apart, never estimated
    assert summary.as_dict()["totals"][0]["settled_net"] == "268.64"
    with seeded.db.session() as s:
        jpy_only = settled_summary(s, q2("jpy"))
    assert [(t.currency, t.recoveries, t.net) for t in jpy_only.totals] == [("usd", 2, 3320 + 7952)]
    assert jpy_only.without == {"pending": 1}


def test_month_views_respect_the_provider_and_mode_filters(seeded):
    with seeded.db.session() as s:
        live = by_failure_month(s, Filters(q2().period, livemode=True))
        other = by_recovery_month(s, Filters(q2().period, provider="chargebee"))
        cases = s.query(DunningCase).count()
    assert list(live) == ["eur"] and other == {}
    assert cases == 17

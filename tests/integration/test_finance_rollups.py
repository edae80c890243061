"""The ledger's daily roll-ups always equal the ledger's own aggregation, on SQLite and PostgreSQL.

Rows are written through the ledger's real writers (`webhook_app.ledger`): recoveries in three
currencies, two providers, both modes, three attributions and several decline classes; a partial refund,
a credit note and its voiding, a refund capped at what is left; settled figures recorded for one
recovery (EUR invoice paid out in USD) and closed as `none` for another; a replayed recovery; and one
row added through the ORM the way fixtures do. Then:
- hand-worked figures for Q2 2025 come out of the roll-ups;
- the roll-up tables equal a GROUP BY over the ledger, and `rebuild-rollups` writes the same rows;
- every dashboard figure read from the roll-ups (whole days) equals the same figure read from the
  ledger (the same period ending one second earlier, which no row falls in, so it is not whole days);
- concurrent writers to the same roll-up row lose no increment;
- the `roll1` migration fills the roll-ups from a ledger written before it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select

from webhook_app import ledger, migrate, rollups
from webhook_app.clock import FrozenClock
from webhook_app.domain import CorrectionVoided, MoneyReturned, Settlement
from webhook_app.finance.declines import by_decline_class
from webhook_app.finance.period import Period
from webhook_app.finance.queries import Filters, ledger_groups, recovery_times, summarize, weekly
from webhook_app.finance.settled import settled_summary
from webhook_app.models import DunningCase, LedgerDaily, LedgerEntry, RecoveryDurationDaily
from webhook_app.states import LedgerKind, SettlementStatus

NOW = datetime(2025, 7, 1, 12, 0)
Q2 = Period(datetime(2025, 4, 1), datetime(2025, 7, 1))

# invoice, provider, currency, amount, livemode, decline class, attribution, failed at, paid at
HAND = [
    ("in_a", "stripe", "usd", 4900, False, "insufficient_funds", "link_click", (4, 1, 9), (4, 10, 10)),
    ("in_b", "stripe", "usd", 10000, True, "update_card", "provider_retry", (4, 20, 8), (4, 22, 8)),
    ("in_c", "chargebee", "eur", 7000, False, None, "out_of_band", (5, 2, 6), (5, 5, 14)),
    ("in_d", "stripe", "jpy", 5000, False, "contact_bank", "link_click", (5, 30, 1), (6, 2, 3)),
    ("in_e", "chargebee", "usd", 2500, False, "insufficient_funds", "provider_retry", (3, 1, 5), (3, 28, 5)),
]


def at(month: int, day: int, hour: int) -> datetime:
    return datetime(2025, month, day, hour, 17, 29)


def new_case(s, invoice: str, provider: str, currency: str, amount: int, live: bool, decline: str | None, failed):
    case = DunningCase(
        provider=provider,
        invoice_id=invoice,
        customer_id=f"cus_{invoice}",
        customer_email=f"{invoice}@example.com",
        currency=currency,
        amount_due=amount,
        status="recovered",
        decline_class=decline,
        first_failed_at=failed,
        attempt_count=2,
        episode=1,
        messages_sent=1,
        livemode=live,
        created_at=failed,
        updated_at=failed,
    )
    s.add(case)
    s.flush()
    return case


def recover(s, case: DunningCase, amount: int, attribution: str, paid: datetime) -> bool:
    return ledger.record_recovery(
        s, case, amount=amount, paid_at=paid, attempts=2, attribution=attribution, first_click=None, now=paid
    )


def seed(svc) -> None:
    with svc.db.session() as s:
        cases = {}
        for invoice, provider, currency, amount, live, decline, cause, failed, paid in HAND:
            cases[invoice] = new_case(s, invoice, provider, currency, amount, live, decline, at(*failed))
            assert recover(s, cases[invoice], amount, cause, at(*paid))
        assert not recover(s, cases["in_a"], 4900, "link_click", at(4, 10, 10))  # a replay adds nothing
        # More recoveries over Q2 and around it, durations from minutes to weeks, for the percentiles.
        for i in range(48):
            currency = ("usd", "eur", "jpy")[i % 3]
            paid = datetime(2025, 3, 25, 6) + timedelta(hours=53 * i + 7)
            failed = paid - timedelta(seconds=(i * 7919) % 1_900_000 + 60)
            case = new_case(
                s, f"in_m{i}", ("stripe", "chargebee")[i % 2], currency, 1000 + 37 * i, i % 4 == 0, None, failed
            )
            recover(s, case, 1000 + 37 * i, ("link_click", "provider_retry", "out_of_band")[i % 3], paid)

    with svc.db.session() as s:
        a = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_key == "recovery:in_a")).one()
        refund = MoneyReturned("in_a", "refund:re_1", LedgerKind.REFUND, 1500, "usd", at(5, 3, 11))
        assert ledger.money_returned(s, "stripe", refund, NOW) == 1500
        note = MoneyReturned("in_b", "credit_note:cn_1", LedgerKind.CREDIT_NOTE, 2000, "usd", at(6, 5, 9))
        assert ledger.money_returned(s, "stripe", note, NOW) == 2000
        voided = CorrectionVoided("credit_note:cn_1", "credit_note:cn_1:void", at(6, 6, 9))
        assert ledger.correction_voided(s, "stripe", voided, NOW)
        too_much = MoneyReturned("in_a", "refund:re_2", LedgerKind.REFUND, 9900, "usd", at(6, 9, 12))
        assert ledger.money_returned(s, "stripe", too_much, NOW) == 4900 - 1500  # capped at what is left
        # The EUR recovery reached the balance in USD; the JPY one was paid outside the provider.
        c = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_key == "recovery:in_c")).one()
        assert ledger.record_settlement(s, c.id, Settlement("txn_c", 7600, 250, 7350, "usd"), NOW)
        assert not ledger.record_settlement(s, c.id, Settlement("txn_c", 7600, 250, 7350, "usd"), NOW)
        d = s.scalars(select(LedgerEntry).where(LedgerEntry.entry_key == "recovery:in_d")).one()
        assert ledger.close_settlement(s, d.id, SettlementStatus.NONE, NOW)
        assert a.case_id is not None
        # A row added through the ORM (fixtures, a console session): rolled up all the same.
        s.add(
            LedgerEntry(
                provider="stripe",
                entry_key="recovery:in_orm",
                kind="recovery",
                case_id=a.case_id,
                invoice_id="in_orm",
                customer_id="cus_orm",
                amount=800,
                currency="usd",
                livemode=False,
                recovered_at=at(6, 20, 8),
                seconds_to_recover=3600,
                attribution="link_click",
                settlement_status="settled",
                settled_amount=800,
                settled_fee=50,
                settled_net=750,
                settled_currency="usd",
                created_at=NOW,
            )
        )


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def seeded(svc):
    seed(svc)
    return svc


def key(r: Any) -> tuple:
    return (r.day, r.provider, r.currency, bool(r.livemode), r.kind, r.attribution, r.decline_class)


def rolled_up(svc) -> tuple[dict[tuple, tuple], dict[tuple, int]]:
    """Both roll-up tables as {dimensions: sums}, groups summing to nothing left out."""
    with svc.db.session() as s:
        daily = {
            (*key(r), r.settlement_status, r.settled_currency): (
                r.entries,
                r.amount,
                r.settled_amount,
                r.settled_fee,
                r.settled_net,
            )
            for r in s.scalars(select(LedgerDaily))
        }
        durations = {
            (r.day, r.provider, r.currency, bool(r.livemode), r.bucket): r.recoveries
            for r in s.scalars(select(RecoveryDurationDaily))
        }
    return (
        {k: v for k, v in daily.items() if v != (0, 0, 0, 0, 0)},
        {k: v for k, v in durations.items() if v},
    )


def aggregated_from_the_ledger(svc) -> tuple[dict[tuple, tuple], dict[tuple, int]]:
    """The same sums computed here, row by row, from the ledger and its cases."""
    daily: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    durations: dict[tuple, int] = defaultdict(int)
    with svc.db.session() as s:
        rows = s.execute(select(LedgerEntry, DunningCase.decline_class).outerjoin(DunningCase)).all()
        for row, decline in rows:
            decline_class = "" if row.case_id is None else decline or "unknown"
            key = (row.recovered_at.date(), row.provider, row.currency, bool(row.livemode), row.kind)
            key += (row.attribution or "", decline_class, row.settlement_status or "", row.settled_currency or "")
            sums = daily[key]
            sums[0] += 1
            sums[1] += row.amount
            sums[2] += row.settled_amount or 0
            sums[3] += row.settled_fee or 0
            sums[4] += row.settled_net or 0
            if row.kind == "recovery" and row.seconds_to_recover is not None:
                bucket = rollups.bucket_of(row.seconds_to_recover)
                durations[(row.recovered_at.date(), row.provider, row.currency, bool(row.livemode), bucket)] += 1
    return {k: tuple(v) for k, v in daily.items()}, dict(durations)


def test_hand_worked_figures_come_out_of_the_roll_ups(seeded):
    with seeded.db.session() as s:
        figures = {c.currency: c for c in summarize(s, Filters(Q2))}
        settled = settled_summary(s, Filters(Q2))
        declines = by_decline_class(s, Filters(Q2, currency="usd", provider="stripe"))
    usd = figures["usd"]
    # in_a 49.00 + in_b 100.00 + the ORM row 8.00, plus the generated USD recoveries paid in Q2.
    with seeded.db.session() as s:
        generated = s.scalars(
            select(LedgerEntry.amount).where(
                LedgerEntry.entry_key.like("recovery:in_m%"),
                LedgerEntry.currency == "usd",
                LedgerEntry.recovered_at >= Q2.since,
                LedgerEntry.recovered_at < Q2.until,
            )
        ).all()
    assert usd.recovered_gross == 4900 + 10000 + 800 + sum(generated)
    assert usd.recoveries == 3 + len(generated)
    # -15.00 refund, -20.00 credit note, +20.00 its voiding, -34.00 (capped) refund.
    assert (usd.corrections, usd.correction_count) == (-1500 - 2000 + 2000 - 3400, 4)
    assert [(t.currency, t.recoveries, t.amount, t.fee, t.net) for t in settled.totals] == [
        ("usd", 2, 7600 + 800, 250 + 50, 7350 + 750)
    ]
    assert settled.totals[0].invoice_currencies == ["eur", "usd"]
    assert settled.without["none"] == 1  # in_d, paid outside the provider
    named = {r.decline_class: (r.recoveries, r.recovered) for r in declines["usd"] if r.decline_class != "unknown"}
    assert named == {
        "insufficient_funds": (2, 4900 + 800),  # in_a and the ORM row (on in_a's case)
        "update_card": (1, 10000),
    }  # (the generated recoveries' cases have no decline class: `unknown`)


def test_roll_ups_equal_the_ledger_and_a_rebuild_writes_the_same(seeded):
    daily, durations = rolled_up(seeded)
    assert (daily, durations) == aggregated_from_the_ledger(seeded)
    assert sum(v[0] for v in daily.values()) == 5 + 48 + 4 + 1  # every ledger row counted once

    with seeded.db.session() as s:
        done = rollups.rebuild(s)
    assert done.ledger_rows == 58 and done.daily_rows == len(daily) and done.duration_rows == len(durations)
    assert rolled_up(seeded) == (daily, durations)


def test_the_cli_rebuilds_the_roll_ups(seeded, app):
    with seeded.db.session() as s:
        s.execute(LedgerDaily.__table__.delete())
    result = app.test_cli_runner().invoke(args=["finance", "rebuild-rollups"])
    assert result.exit_code == 0, result.output
    assert "from 58 ledger rows" in result.output
    assert rolled_up(seeded) == aggregated_from_the_ledger(seeded)


def figures(s, f: Filters) -> dict[str, Any]:
    return {
        "groups": sorted(ledger_groups(s, f), key=repr),
        "summary": [c.as_dict() for c in summarize(s, f)],
        "weekly": weekly(s, f),
        "declines": {c: [r.as_dict() for r in rows] for c, rows in by_decline_class(s, f).items()},
        "times": recovery_times(s, f),
        "settled": settled_summary(s, f).as_dict(),
    }


PERIODS = [
    Q2,
    Period(datetime(2025, 3, 1), datetime(2025, 8, 1)),
    Period(datetime(2025, 5, 5), datetime(2025, 5, 6)),
    Period(datetime(2025, 4, 14), datetime(2025, 6, 9)),
]


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: p.label)
def test_every_figure_from_the_roll_ups_equals_the_ledgers(seeded, period, caplog):
    exact = Period(period.since, period.until - timedelta(seconds=1))  # not whole days: read from the ledger
    with seeded.db.session() as s:
        for currency in (None, "usd", "eur", "jpy"):
            for livemode in (None, True, False):
                for provider in (None, "stripe", "chargebee"):
                    whole = Filters(period, currency, livemode, provider)
                    from_ledger = figures(s, Filters(exact, currency, livemode, provider))
                    from_rollups = figures(s, whole)
                    assert from_rollups == from_ledger, (currency, livemode, provider)
        assert figures(s, Filters(period))["times"]  # the percentiles were exercised, not empty
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # no fallback to the ledger


def test_concurrent_writers_lose_no_increment(svc):
    with svc.db.session() as s:
        cases = [new_case(s, f"in_t{i}", "stripe", "usd", 100, False, "technical", at(4, 1, 1)) for i in range(2 * 15)]
        ids = [c.id for c in cases]
    errors: list[BaseException] = []

    def write(mine: list[int]) -> None:
        try:
            for case_id in mine:
                with svc.db.session() as s:
                    case = s.get(DunningCase, case_id)
                    assert case is not None
                    recover(s, case, 100, "link_click", at(4, 2, 9))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(ids[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    daily, durations = rolled_up(svc)
    assert [v[:2] for v in daily.values()] == [(30, 3000)]
    assert sum(durations.values()) == 30


def test_the_migration_fills_the_roll_ups_from_an_existing_ledger(seeded):
    expected = aggregated_from_the_ledger(seeded)
    cfg = migrate.alembic_config()
    with seeded.db.engine.begin() as conn:  # back to before the roll-ups: the ledger stays, they go
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "ops1")
    with seeded.db.engine.connect() as conn:
        assert "recovery_ledger_daily" not in inspect(conn).get_table_names()
    migrate.upgrade(seeded.db)
    assert rolled_up(seeded) == expected

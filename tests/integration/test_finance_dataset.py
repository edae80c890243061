"""A seeded finance data set with known answers, shared by the finance tests (and the browser test).

Three currencies (USD and JPY in test mode, EUR live), recovered / lost / open / error / never-failed cases,
refunds and a credit note, some rows outside the period. The expected figures below were worked out by
hand from the rows; every finance test asserts against them.

Timeline (UTC; 2025-06-30 is a Monday):
  USD  in_u0   10000  failed 03-10  paid 03-15 (5d, link)      refunded in full 04-05 (-10000)
       in_u1    4900  failed 04-08 10:00  paid 04-10 10:00 (2d, link)
       in_u2    9900  failed 05-04 09:00  paid 05-05 09:00 (1d, retry)  refunded 06-01 15:00 (-2500, a Sunday)
       in_u3    2000  failed 06-16 08:00  paid 06-20 08:00 (4d, out of band)
       in_ul1   3000  void, failed 04-20, closed 05-10
       in_ul2   7000  uncollectible, failed 06-01, closed 06-15
       in_ul3   5000  canceled, failed 02-10, closed 03-01
       in_uo1   1500  open since 06-25;  in_uo2  2500  paused since 06-10
       in_uerr   600  error, failed 05-20, closed 05-22 (neither lost nor open at the end of Q2)
       in_upaid 9999  paid without ever failing (never counted)
  JPY  in_j1    5000  failed 04-17  paid 04-20 (3d, link)
       in_j2   12000  failed 05-28  paid 06-02 (5d, link)      credit note 06-05 (-2000)
       in_j3     800  failed 06-09  paid 06-10 (1d, retry)
       in_jl1   3000  canceled, failed 04-29, closed 05-20
       in_jo1   4000  open since 06-28
  EUR  in_e1    1250  failed 05-15 10:00  paid 05-15 12:00 (2h, retry), live mode
"""

from __future__ import annotations

from datetime import datetime, timedelta

from webhook_app.db import Database
from webhook_app.models import DunningCase, LedgerEntry

NOW = datetime(2025, 6, 30, 12, 0)
DAY = 86400
FINANCE_USER, FINANCE_PASSWORD = "finance", "s3cret-ledger"

Q2 = {"since": "2025-04-01", "until": "2025-06-30"}
APRIL = {"since": "2025-04-01", "until": "2025-04-30"}
MARCH = {"since": "2025-03-01", "until": "2025-03-31"}

# (invoice, customer, currency, amount, first failed, paid, attribution, livemode)
RECOVERIES = [
    ("in_u0", "cus_u0", "usd", 10000, datetime(2025, 3, 10), datetime(2025, 3, 15), "link_click", False),
    ("in_u1", "cus_u1", "usd", 4900, datetime(2025, 4, 8, 10), datetime(2025, 4, 10, 10), "link_click", False),
    ("in_u2", "cus_u2", "usd", 9900, datetime(2025, 5, 4, 9), datetime(2025, 5, 5, 9), "provider_retry", False),
    ("in_u3", "cus_u3", "usd", 2000, datetime(2025, 6, 16, 8), datetime(2025, 6, 20, 8), "out_of_band", False),
    ("in_j1", "cus_j1", "jpy", 5000, datetime(2025, 4, 17), datetime(2025, 4, 20), "link_click", False),
    ("in_j2", "cus_j2", "jpy", 12000, datetime(2025, 5, 28), datetime(2025, 6, 2), "link_click", False),
    ("in_j3", "cus_j3", "jpy", 800, datetime(2025, 6, 9), datetime(2025, 6, 10), "provider_retry", False),
    ("in_e1", "cus_e1", "eur", 1250, datetime(2025, 5, 15, 10), datetime(2025, 5, 15, 12), "provider_retry", True),
]
# (entry key, kind, invoice, amount, at)
CORRECTIONS = [
    ("refund:ch_u0:10000", "refund", "in_u0", -10000, datetime(2025, 4, 5, 12)),
    ("refund:ch_u2:2500", "refund", "in_u2", -2500, datetime(2025, 6, 1, 15)),
    ("credit_note:cn_j2", "credit_note", "in_j2", -2000, datetime(2025, 6, 5)),
]
# (invoice, currency, amount due, status, first failed, closed)
OTHER_CASES = [
    ("in_ul1", "usd", 3000, "void", datetime(2025, 4, 20), datetime(2025, 5, 10)),
    ("in_ul2", "usd", 7000, "uncollectible", datetime(2025, 6, 1), datetime(2025, 6, 15)),
    ("in_ul3", "usd", 5000, "canceled", datetime(2025, 2, 10), datetime(2025, 3, 1)),
    ("in_uo1", "usd", 1500, "open", datetime(2025, 6, 25), None),
    ("in_uo2", "usd", 2500, "paused", datetime(2025, 6, 10), None),
    ("in_uerr", "usd", 600, "error", datetime(2025, 5, 20), datetime(2025, 5, 22)),
    ("in_upaid", "usd", 9999, "paid", None, datetime(2025, 5, 1)),
    ("in_jl1", "jpy", 3000, "canceled", datetime(2025, 4, 29), datetime(2025, 5, 20)),
    ("in_jo1", "jpy", 4000, "open", datetime(2025, 6, 28), None),
]

# Known answers for Q2 2025 ([2025-04-01, 2025-07-01)), per currency.
EXPECTED_Q2 = {
    "eur": dict(
        recovered_gross=1250,
        corrections=0,
        recovered_net=1250,
        recoveries=1,
        correction_count=0,
        lost_amount=0,
        lost_cases=0,
        open_cases=0,
        at_risk=0,
        recovery_rate=1.0,
        amount_recovery_rate=1.0,
        median_seconds=7200,
        attribution={"link_click": (0, 0), "provider_retry": (1, 1250), "out_of_band": (0, 0)},
    ),
    "jpy": dict(
        recovered_gross=17800,
        corrections=-2000,
        recovered_net=15800,
        recoveries=3,
        correction_count=1,
        lost_amount=3000,
        lost_cases=1,
        open_cases=1,
        at_risk=4000,
        recovery_rate=0.75,
        amount_recovery_rate=17800 / 20800,
        median_seconds=3 * DAY,
        attribution={"link_click": (2, 17000), "provider_retry": (1, 800), "out_of_band": (0, 0)},
    ),
    "usd": dict(
        recovered_gross=16800,
        corrections=-12500,
        recovered_net=4300,
        recoveries=3,
        correction_count=2,
        lost_amount=10000,
        lost_cases=2,
        open_cases=2,
        at_risk=4000,
        recovery_rate=0.6,
        amount_recovery_rate=16800 / 26800,
        median_seconds=2 * DAY,
        attribution={"link_click": (1, 4900), "provider_retry": (1, 9900), "out_of_band": (1, 2000)},
    ),
}
Q2_ROWS = 10  # 5 USD (3 recoveries, 2 refunds), 4 JPY (3 recoveries, 1 credit note), 1 EUR


def _case(
    invoice: str, customer: str, currency: str, amount: int, status: str, failed, closed, livemode=False, paid=None
) -> DunningCase:
    created = failed or closed or NOW
    return DunningCase(
        provider="stripe",
        invoice_id=invoice,
        customer_id=customer,
        currency=currency,
        amount_due=amount,
        status=status,
        livemode=livemode,
        first_failed_at=failed,
        last_failed_at=failed,
        paid_at=paid,
        closed_at=closed,
        created_at=created,
        updated_at=closed or created,
        attempt_count=1,
        episode=1,
        messages_sent=1,
    )


def seed(db: Database) -> None:
    """Insert the data set (cases and ledger rows) into a migrated, empty database."""
    with db.session() as s:
        cases = {}
        for invoice, customer, currency, amount, failed, paid, _attribution, livemode in RECOVERIES:
            case = _case(invoice, customer, currency, amount, "recovered", failed, paid, livemode, paid)
            s.add(case)
            cases[invoice] = case
        for invoice, currency, amount, status, failed, closed in OTHER_CASES:
            s.add(_case(invoice, f"cus_{invoice[3:]}", currency, amount, status, failed, closed))
        s.flush()
        for invoice, customer, currency, amount, failed, paid, attribution, livemode in RECOVERIES:
            s.add(
                LedgerEntry(
                    provider="stripe",
                    entry_key=f"recovery:{invoice}",
                    kind="recovery",
                    case_id=cases[invoice].id,
                    invoice_id=invoice,
                    customer_id=customer,
                    amount=amount,
                    currency=currency,
                    livemode=livemode,
                    first_failed_at=failed,
                    recovered_at=paid,
                    seconds_to_recover=int((paid - failed).total_seconds()),
                    attempts=2,
                    messages_sent=1,
                    attribution=attribution,
                    created_at=paid + timedelta(seconds=5),
                )
            )
        for key, kind, invoice, amount, at in CORRECTIONS:
            recovery = next(r for r in RECOVERIES if r[0] == invoice)
            s.add(
                LedgerEntry(
                    provider="stripe",
                    entry_key=key,
                    kind=kind,
                    case_id=cases[invoice].id,
                    invoice_id=invoice,
                    customer_id=recovery[1],
                    amount=amount,
                    currency=recovery[2],
                    livemode=recovery[7],
                    recovered_at=at,
                    attempts=0,
                    messages_sent=0,
                    attribution=recovery[6],
                    created_at=at,
                )
            )


def test_expected_answers_match_the_rows_they_were_derived_from():
    """Guard the hand-worked answers: gross and corrections recomputed from the row lists."""
    since, until = datetime(2025, 4, 1), datetime(2025, 7, 1)
    for currency, expected in EXPECTED_Q2.items():
        gross = sum(r[3] for r in RECOVERIES if r[2] == currency and since <= r[5] < until)
        fixes = sum(
            c[3]
            for c in CORRECTIONS
            if next(r for r in RECOVERIES if r[0] == c[2])[2] == currency and since <= c[4] < until
        )
        assert (gross, fixes, gross + fixes) == (
            expected["recovered_gross"],
            expected["corrections"],
            expected["recovered_net"],
        )

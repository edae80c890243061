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

Every case has a customer name, email and invoice number (copied onto its ledger rows, as the ledger
does). The open cases have messages and clicks: in_uo1 (Grace Hopper) got 2 messages, clicked 06-29
14:30, reminder 2 due 07-02 08:00; in_uo2 is paused (new card) with Stripe's retry on 07-01 09:00;
in_jo1 got nothing yet, its first message due 06-30 12:05. Settled (balance transactions, all in USD,
the payout currency): in_u0, in_u1, in_u2, in_j1 (rate 0.0069), in_j2 (rate 0.00685), in_e1 (rate
1.08); in_j3 still pending; in_u3 paid out of band (none).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from webhook_app.db import Database
from webhook_app.models import Click, DunningCase, LedgerEntry, Notification

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

# Customers: named ones for the lists; the others get a generated name and address.
PEOPLE = {
    "in_uo1": ("Grace Hopper", "grace.hopper@example.com"),
    "in_uo2": ("Alan Turing", "alan@example.org"),
    "in_jo1": ("Ada Lovelace", "ada.lovelace@example.jp"),
    "in_ul2": ("Edsger Dijkstra", "edsger@example.nl"),
}
MESSAGES_SENT = {"in_uo1": 2, "in_jo1": 0}


def person(invoice: str) -> tuple[str, str, str]:
    """(customer name, email, invoice number) of a seeded case."""
    suffix = invoice[3:]
    name, email = PEOPLE.get(invoice, (f"Customer {suffix.upper()}", f"billing+{suffix}@example.com"))
    return name, email, f"INV-{suffix.upper()}"


# (invoice, settled amount, fee, net, exchange rate); all in USD, the account's payout currency.
SETTLEMENTS = {
    "in_u0": (10000, 320, 9680, None),
    "in_u1": (4900, 172, 4728, None),
    "in_u2": (9900, 317, 9583, None),
    "in_j1": (3450, 130, 3320, "0.0069"),  # ¥5,000 x 0.0069 = $34.50
    "in_j2": (8220, 268, 7952, "0.00685"),  # ¥12,000 x 0.00685 = $82.20
    "in_e1": (1350, 69, 1281, "1.08"),  # €12.50 x 1.08 = $13.50
}
SETTLEMENT_STATUS = {"in_j3": "pending", "in_u3": "none"}  # the rest of the recoveries: settled

# At risk now (NOW = 06-30 12:00): the longest at risk first.
EXPECTED_AT_RISK = [
    # invoice, number, email, currency, amount, days since first failure, messages, last click, next step, when
    (
        "in_uo2",
        "INV-UO2",
        "alan@example.org",
        "usd",
        2500,
        20,
        1,
        None,
        "Provider retry (payment method updated)",
        "2025-07-01T09:00:00Z",
    ),
    (
        "in_uo1",
        "INV-UO1",
        "grace.hopper@example.com",
        "usd",
        1500,
        5,
        2,
        "2025-06-29T14:30:00Z",
        "Reminder 2",
        "2025-07-02T08:00:00Z",
    ),
    ("in_jo1", "INV-JO1", "ada.lovelace@example.jp", "jpy", 4000, 2, 0, None, "First message", "2025-06-30T12:05:00Z"),
]
EXPECTED_AT_RISK_TOTALS = {"jpy": (1, 4000), "usd": (2, 4000)}
# Lost in Q2, newest first: (invoice, reason, amount, closed, days chased)
EXPECTED_LOST_Q2 = [
    ("in_ul2", "Written off as uncollectible", 7000, "2025-06-15T00:00:00Z", 14),
    ("in_jl1", "Subscription canceled for non-payment", 3000, "2025-05-20T00:00:00Z", 21),
    ("in_ul1", "Invoice voided", 3000, "2025-05-10T00:00:00Z", 20),
]
# By month of first failure, Q2: month -> (failed, recovered, lost, still open, rate, median s, p90 s)
EXPECTED_BY_FAILURE_Q2 = {
    "usd": {
        date(2025, 4, 1): (2, 1, 1, 0, 0.5, 2 * DAY, 2 * DAY),  # in_u1 recovered, in_ul1 voided
        date(2025, 5, 1): (2, 1, 0, 0, 1.0, DAY, DAY),  # in_u2 recovered; in_uerr closed otherwise (error)
        date(2025, 6, 1): (4, 1, 1, 2, 0.5, 4 * DAY, 4 * DAY),  # in_u3, in_ul2, in_uo1 + in_uo2 open
    },
    "jpy": {
        date(2025, 4, 1): (2, 1, 1, 0, 0.5, 3 * DAY, 3 * DAY),  # in_j1, in_jl1
        date(2025, 5, 1): (1, 1, 0, 0, 1.0, 5 * DAY, 5 * DAY),  # in_j2: failed 05-28, open at May's end, paid 06-02
        date(2025, 6, 1): (2, 1, 0, 1, 1.0, DAY, DAY),  # in_j3 recovered; in_jo1 still open (not in the rate)
    },
    "eur": {
        date(2025, 4, 1): (0, 0, 0, 0, None, None, None),
        date(2025, 5, 1): (1, 1, 0, 0, 1.0, 7200, 7200),
        date(2025, 6, 1): (0, 0, 0, 0, None, None, None),
    },
}
# By month of recovery, Q2: month -> (recoveries, recovered amount, lost, lost amount, rate, median s, p90 s)
EXPECTED_BY_RECOVERY_Q2 = {
    "usd": {
        date(2025, 4, 1): (1, 4900, 0, 0, 1.0, 2 * DAY, 2 * DAY),
        date(2025, 5, 1): (1, 9900, 1, 3000, 0.5, DAY, DAY),  # in_ul1 voided 05-10
        date(2025, 6, 1): (1, 2000, 1, 7000, 0.5, 4 * DAY, 4 * DAY),
    },
    "jpy": {
        date(2025, 4, 1): (1, 5000, 0, 0, 1.0, 3 * DAY, 3 * DAY),
        date(2025, 5, 1): (0, 0, 1, 3000, 0.0, None, None),  # in_jl1 canceled; in_j2 not paid until June
        # in_j2 (5d) and in_j3 (1d): the median is 3d; the 90th percentile 1d + 0.9 x 4d = 4.6d
        date(2025, 6, 1): (2, 12800, 0, 0, 1.0, 3 * DAY, 4.6 * DAY),
    },
    "eur": {
        date(2025, 4, 1): (0, 0, 0, 0, None, None, None),
        date(2025, 5, 1): (1, 1250, 0, 0, 1.0, 7200, 7200),
        date(2025, 6, 1): (0, 0, 0, 0, None, None, None),
    },
}
# Settled in Q2, all in USD: in_u1, in_u2, in_j1, in_j2, in_e1 (in_j3 pending, in_u3 out of band).
EXPECTED_SETTLED_Q2 = {
    "usd": dict(recoveries=5, amount=27820, fee=956, net=26864, invoice_currencies=["eur", "jpy", "usd"])
}
EXPECTED_SETTLED_MISSING_Q2 = {"none": 1, "pending": 1}


def _case(
    invoice: str, customer: str, currency: str, amount: int, status: str, failed, closed, livemode=False, paid=None
) -> DunningCase:
    created = failed or closed or NOW
    name, email, number = person(invoice)
    return DunningCase(
        provider="stripe",
        invoice_id=invoice,
        customer_id=customer,
        customer_name=name,
        customer_email=email,
        invoice_number=number,
        next_payment_attempt=datetime(2025, 7, 1, 9) if invoice == "in_uo2" else None,
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
        messages_sent=MESSAGES_SENT.get(invoice, 1),
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
            cases[invoice] = _case(invoice, f"cus_{invoice[3:]}", currency, amount, status, failed, closed)
            s.add(cases[invoice])
        s.flush()
        _open_case_activity(s, cases)
        for invoice, customer, currency, amount, failed, paid, attribution, livemode in RECOVERIES:
            name, email, number = person(invoice)
            settled = SETTLEMENTS.get(invoice)
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
                    invoice_number=number,
                    customer_name=name,
                    customer_email=email,
                    settlement_status=SETTLEMENT_STATUS.get(invoice, "settled"),
                    settlement_id=f"txn_{invoice[3:]}" if settled else None,
                    settled_amount=settled[0] if settled else None,
                    settled_fee=settled[1] if settled else None,
                    settled_net=settled[2] if settled else None,
                    settled_currency="usd" if settled else None,
                    settled_exchange_rate=settled[3] if settled else None,
                    created_at=paid + timedelta(seconds=5),
                )
            )
        for key, kind, invoice, amount, at in CORRECTIONS:
            recovery = next(r for r in RECOVERIES if r[0] == invoice)
            name, email, number = person(invoice)
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
                    invoice_number=number,
                    customer_name=name,
                    customer_email=email,
                    created_at=at,
                )
            )


def _open_case_activity(s, cases: dict[str, DunningCase]) -> None:
    """Messages sent and due, and a click, on the open cases (see the module docstring)."""

    def note(invoice: str, step: int, status: str, run_at: datetime) -> Notification:
        case = cases[invoice]
        return Notification(
            provider="stripe",
            case_id=case.id,
            episode=1,
            step=step,
            kind="payment_failed",
            status=status,
            run_at=run_at,
            sent_at=run_at if status == "sent" else None,
            created_at=case.created_at,
        )

    s.add_all(
        [
            note("in_uo1", 0, "sent", datetime(2025, 6, 25, 8)),
            note("in_uo1", 1, "sent", datetime(2025, 6, 28, 8)),
            note("in_uo1", 2, "pending", datetime(2025, 7, 2, 8)),
            note("in_uo1", 99, "pending", datetime(2025, 7, 8, 8)),
            note("in_uo2", 0, "sent", datetime(2025, 6, 10, 8)),
            note("in_uo2", 1, "canceled", datetime(2025, 6, 13, 8)),  # paused: the rest was withdrawn
            note("in_jo1", 0, "pending", datetime(2025, 6, 30, 12, 5)),
            note("in_jo1", 99, "pending", datetime(2025, 7, 11)),
            note("in_ul2", 0, "sent", datetime(2025, 6, 1, 8)),
        ]
    )
    s.add(Click(provider="stripe", case_id=cases["in_uo1"].id, clicked_at=datetime(2025, 6, 29, 14, 30)))
    s.add(Click(provider="stripe", case_id=cases["in_uo1"].id, clicked_at=datetime(2025, 6, 26, 9)))


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

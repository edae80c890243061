"""Finance by why the payment failed: recovery rate and amounts per decline class, on both databases.

A hand-worked set on top of nothing else: three USD cases and one JPY case, each with a decline class,
recovered or lost in Q2 2025; one USD recovery outside the period must not count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.integration.test_finance_dataset import FINANCE_PASSWORD, FINANCE_USER
from tests.integration.test_finance_views import AUTH
from webhook_app.clock import FrozenClock
from webhook_app.models import DunningCase, LedgerEntry

NOW = datetime(2025, 7, 1, 12, 0)
# invoice, currency, amount, decline class (None: never read), status, closed/paid at
CASES = [
    ("in_f1", "usd", 4900, "insufficient_funds", "recovered", datetime(2025, 4, 10)),
    ("in_f2", "usd", 10000, "insufficient_funds", "uncollectible", datetime(2025, 5, 2)),
    ("in_f3", "usd", 2500, "update_card", "recovered", datetime(2025, 6, 1)),
    ("in_f4", "usd", 700, None, "void", datetime(2025, 6, 3)),
    ("in_f5", "jpy", 5000, "contact_bank", "recovered", datetime(2025, 5, 20)),
    ("in_f6", "usd", 9900, "insufficient_funds", "recovered", datetime(2025, 3, 1)),  # before the period
]


def seed(db) -> None:
    with db.session() as s:
        for invoice, currency, amount, decline, status, at in CASES:
            case = DunningCase(
                provider="stripe",
                invoice_id=invoice,
                customer_id=f"cus_{invoice}",
                currency=currency,
                amount_due=amount,
                status=status,
                decline_class=decline,
                first_failed_at=at - timedelta(days=2),
                closed_at=at,
                paid_at=at if status == "recovered" else None,
                created_at=at - timedelta(days=2),
                updated_at=at,
                attempt_count=2,
                episode=1,
                messages_sent=1,
                livemode=False,
            )
            s.add(case)
            s.flush()
            if status == "recovered":
                s.add(
                    LedgerEntry(
                        provider="stripe",
                        entry_key=f"recovery:{invoice}",
                        kind="recovery",
                        case_id=case.id,
                        invoice_id=invoice,
                        customer_id=case.customer_id,
                        amount=amount,
                        currency=currency,
                        livemode=False,
                        recovered_at=at,
                        attempts=2,
                        messages_sent=1,
                        attribution="link_click",
                        created_at=at,
                    )
                )


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def get(make_app):
    app = make_app(FINANCE_USERNAME=FINANCE_USER, FINANCE_PASSWORD=FINANCE_PASSWORD)
    seed(app.extensions["webhook_app"].db)
    client = app.test_client()
    return lambda path, **params: client.get(path, query_string=params, headers=AUTH)


def test_rate_and_amounts_by_decline_class_per_currency(get):
    body = get("/finance/declines.json", since="2025-04-01", until="2025-06-30").get_json()

    usd = {r["decline_class"]: r for r in body["by_decline_class"]["usd"]}
    # insufficient_funds: $49.00 back, $100.00 written off (the March recovery is outside the period).
    assert (usd["insufficient_funds"]["recoveries"], usd["insufficient_funds"]["lost_cases"]) == (1, 1)
    assert (usd["insufficient_funds"]["recovered"], usd["insufficient_funds"]["lost"]) == ("49.00", "100.00")
    assert usd["insufficient_funds"]["recovery_rate"] == 0.5
    assert usd["insufficient_funds"]["amount_recovery_rate"] == round(4900 / 14900, 4)
    assert usd["update_card"]["recovery_rate"] == 1.0 and usd["update_card"]["recovered_minor"] == 2500
    assert usd["unknown"]["lost"] == "7.00" and usd["unknown"]["recovery_rate"] == 0.0  # a case never classified
    # Table order: the decline table's own order, never mixed across currencies.
    assert [r["decline_class"] for r in body["by_decline_class"]["usd"]] == [
        "update_card",
        "insufficient_funds",
        "unknown",
    ]
    [jpy] = body["by_decline_class"]["jpy"]
    assert (jpy["decline_class"], jpy["recovered"], jpy["recovery_rate"]) == ("contact_bank", "5000", 1.0)


def test_the_dashboard_shows_the_decline_table_and_filters_apply(get):
    html = get("/finance", since="2025-04-01", until="2025-06-30").get_data(as_text=True)
    assert 'aria-label="By why the payment failed, USD"' in html
    assert 'data-decline="insufficient_funds"' in html and "$49.00 (1)" in html and "$100.00 (1)" in html

    only_jpy = get("/finance/declines.json", since="2025-04-01", until="2025-06-30", currency="jpy").get_json()
    assert list(only_jpy["by_decline_class"]) == ["jpy"]
    bad = get("/finance/declines.json", currency="dollars")
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_parameter"

"""At risk now, and lost: the lists finance acts on, over HTTP, on the seeded data set (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from tests.integration.test_finance_dataset import (
    EXPECTED_AT_RISK,
    EXPECTED_AT_RISK_TOTALS,
    EXPECTED_LOST_Q2,
    FINANCE_PASSWORD,
    FINANCE_USER,
    NOW,
    Q2,
    seed,
)
from tests.integration.test_finance_views import AUTH
from webhook_app.clock import FrozenClock
from webhook_app.models import DunningCase


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def finance_app(make_app):
    app = make_app(FINANCE_USERNAME=FINANCE_USER, FINANCE_PASSWORD=FINANCE_PASSWORD)
    seed(app.extensions["webhook_app"].db)
    return app


@pytest.fixture
def get(finance_app):
    client = finance_app.test_client()
    return lambda path, **params: client.get(path, query_string=params, headers=AUTH)


def table(html: str, table_id: str) -> str:
    match = re.search(rf'<table class="rtable[^"]*" id="{table_id}".*?</table>', html, re.S)
    assert match, f"no table {table_id}"
    return match.group(0)


def add_open_cases(db, n: int, currency: str = "usd") -> None:
    """`n` more open cases, failing one hour apart from 2025-06-01, amounts 100, 200, ..."""
    with db.session() as s:
        for i in range(n):
            failed = datetime(2025, 6, 1) + timedelta(hours=i)
            s.add(
                DunningCase(
                    provider="stripe",
                    invoice_id=f"in_bulk{i:03d}",
                    customer_id=f"cus_bulk{i}",
                    customer_email=f"bulk{i}@example.com",
                    invoice_number=f"INV-B{i:03d}",
                    currency=currency,
                    amount_due=100 * (i + 1),
                    status="open",
                    first_failed_at=failed,
                    created_at=failed,
                    updated_at=failed,
                )
            )


# -- at risk now ---------------------------------------------------------------------------------------
def test_at_risk_lists_every_open_case_now_with_who_owes_what_and_what_happens_next(get):
    body = get("/finance/at-risk.json").get_json()  # default period: irrelevant, at risk is the present
    got = [
        (
            r["invoice_id"],
            r["invoice_number"],
            r["customer_email"],
            r["currency"],
            r["amount_minor"],
            r["days_since_first_failure"],
            r["messages_sent"],
            r["last_click_at"],
            r["next_step"],
            r["next_step_at"],
        )
        for r in body["data"]
    ]
    assert got == EXPECTED_AT_RISK
    assert {t["currency"]: (t["cases"], t["amount_minor"]) for t in body["totals"]} == EXPECTED_AT_RISK_TOTALS
    grace = body["data"][1]
    assert grace["customer_name"] == "Grace Hopper" and grace["provider"] == "stripe"
    assert grace["invoice_url"] == "https://dashboard.stripe.com/test/invoices/in_uo1"
    assert grace["amount"] == "15.00" and body["data"][0]["status"] == "paused"


def test_at_risk_filters_by_currency_and_provider(get):
    jpy = get("/finance/at-risk.json", currency="jpy").get_json()
    assert [r["invoice_id"] for r in jpy["data"]] == ["in_jo1"]
    assert jpy["totals"] == [{"currency": "jpy", "cases": 1, "amount_minor": 4000}]
    stripe = get("/finance/at-risk.json", provider="stripe").get_json()
    assert len(stripe["data"]) == 3
    unknown = get("/finance/at-risk.json", provider="nobody")
    assert unknown.status_code == 400 and "provider must be one of" in unknown.get_json()["message"]


def test_at_risk_sorts_by_amount_only_within_one_currency_and_by_age_either_way(get):
    refused = get("/finance/at-risk.json", sort="-amount")
    assert refused.status_code == 400 and "needs one currency" in refused.get_json()["message"]
    usd = get("/finance/at-risk.json", currency="usd", sort="-amount").get_json()
    assert [r["amount_minor"] for r in usd["data"]] == [2500, 1500]
    newest = get("/finance/at-risk.json", sort="-failed").get_json()
    assert [r["invoice_id"] for r in newest["data"]] == ["in_jo1", "in_uo1", "in_uo2"]


def test_at_risk_pages_forward_and_back_without_losing_or_repeating_a_case(get, finance_app):
    add_open_cases(finance_app.extensions["webhook_app"].db, 23)
    seen, cursor, pages = [], None, []
    while True:
        body = get("/finance/at-risk.json", limit=5, **({"cursor": cursor} if cursor else {})).get_json()
        pages.append(body)
        seen += [r["invoice_id"] for r in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 26 and len(set(seen)) == 26 and len(pages) == 6
    assert seen[:3] == ["in_bulk000", "in_bulk001", "in_bulk002"]  # failed 06-01 00:00, 01:00, ...
    back = get("/finance/at-risk.json", limit=5, cursor=pages[2]["previous_cursor"]).get_json()
    assert [r["invoice_id"] for r in back["data"]] == [r["invoice_id"] for r in pages[1]["data"]]


def test_dashboard_at_risk_section_shows_names_emails_invoice_numbers_and_next_steps(get):
    html = get("/finance").get_data(as_text=True)
    risk = table(html, "at-risk")
    rows = re.findall(r'<tr data-invoice="(in_\w+)"', risk)
    assert rows == ["in_uo2", "in_uo1", "in_jo1"]
    assert "Grace Hopper" in risk and "grace.hopper@example.com" in risk and "INV-UO1" in risk
    assert 'href="https://dashboard.stripe.com/test/invoices/in_uo1"' in risk
    assert "Reminder 2" in risk and "2025-07-02 08:00" in risk and "2025-06-29 14:30" in risk
    assert "$40.00</strong> in 2 cases" in html and "¥4,000</strong> in 1 case" in html


def test_dashboard_at_risk_pages_on_its_own_and_keeps_the_other_lists(get, finance_app, monkeypatch):
    monkeypatch.setattr("webhook_app.finance.views.HTML_PAGE_SIZE", 2)
    html = get("/finance", sort="date", **Q2).get_data(as_text=True)
    url = re.search(r'<a href="([^"]+)" id="risk-page-next"', html).group(1).replace("&amp;", "&")
    assert "risk_cursor=" in url and "sort=date" in url and "#at-risk-heading" in url and "&cursor=" not in url
    second = finance_app.test_client().get(url, headers=AUTH).get_data(as_text=True)
    assert re.findall(r'<tr data-invoice="(in_\w+)"', table(second, "at-risk")) == ["in_jo1"]
    assert 'id="risk-page-first"' in second


def test_a_bad_list_cursor_is_explained_and_only_that_list_starts_over(get):
    response = get("/finance", risk_cursor="not-a-cursor", currency="usd", **Q2)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "cursor is invalid" in html
    assert "USD only" in html  # the filters were kept
    assert re.findall(r'<tr data-invoice="(in_\w+)"', table(html, "at-risk")) == ["in_uo2", "in_uo1"]


# -- lost --------------------------------------------------------------------------------------------
def test_lost_lists_the_periods_lost_cases_with_the_reason(get):
    body = get("/finance/lost.json", **Q2).get_json()
    got = [(r["invoice_id"], r["reason"], r["amount_minor"], r["closed_at"], r["days_chased"]) for r in body["data"]]
    assert got == EXPECTED_LOST_Q2
    edsger = body["data"][0]
    assert (edsger["customer_name"], edsger["customer_email"], edsger["invoice_number"]) == (
        "Edsger Dijkstra",
        "edsger@example.nl",
        "INV-UL2",
    )
    assert edsger["status"] == "uncollectible"
    march = get("/finance/lost.json", since="2025-03-01", until="2025-03-31").get_json()
    assert [(r["invoice_id"], r["reason"]) for r in march["data"]] == [
        ("in_ul3", "Subscription canceled for non-payment")
    ]


def test_lost_sorts_by_closing_date_or_amount_within_a_currency(get):
    oldest = get("/finance/lost.json", sort="closed", **Q2).get_json()
    assert [r["invoice_id"] for r in oldest["data"]] == ["in_ul1", "in_jl1", "in_ul2"]
    usd = get("/finance/lost.json", sort="-amount", currency="usd", **Q2).get_json()
    assert [r["amount_minor"] for r in usd["data"]] == [7000, 3000]
    assert get("/finance/lost.json", sort="amount", **Q2).status_code == 400


def test_dashboard_lost_section_names_the_reason_and_the_customer(get):
    html = get("/finance", **Q2).get_data(as_text=True)
    lost = table(html, "lost")
    assert re.findall(r'<tr data-invoice="(in_\w+)"', lost) == ["in_ul2", "in_jl1", "in_ul1"]
    assert "Written off as uncollectible" in lost and "Edsger Dijkstra" in lost and "INV-UL2" in lost
    assert "Subscription canceled for non-payment" in lost and "Invoice voided" in lost


# -- ledger with names ---------------------------------------------------------------------------------
def test_ledger_rows_show_invoice_numbers_names_and_settled_figures(get):
    html = get("/finance", currency="jpy", **Q2).get_data(as_text=True)
    ledger = table(html, "ledger")
    row = re.search(r'<tr class="kind-recovery" data-entry="recovery:in_j2">.*?</tr>', ledger, re.S).group(0)
    assert "INV-J2" in row and "Customer J2" in row and "billing+j2@example.com" in row
    assert "¥12,000" in row and "$82.20" in row and "fee $2.68, net $79.52, rate 0.00685" in row
    pending = re.search(r'data-entry="recovery:in_j3">.*?</tr>', ledger, re.S).group(0)
    assert "pending" in pending


def test_dashboard_shows_settled_totals_in_the_payout_currency_and_what_is_missing(get):
    html = get("/finance", **Q2).get_data(as_text=True)
    settled = re.search(r'<div class="figures" id="settled">.*?</div>\s*</div>', html, re.S).group(0)
    assert "$268.64" in settled and "$278.20 gross, $9.56 fees" in settled
    assert "5 recoveries invoiced in EUR, JPY, USD" in settled
    assert "1 paid outside the provider; 1 still being looked up" in html


def test_months_page_shows_both_views_of_the_rate_and_the_dashboard_links_to_it(get):
    dashboard = get("/finance", currency="jpy", **Q2).get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" id="months-link">', dashboard).group(1).replace("&amp;", "&")
    assert link.startswith("/finance/months?") and "currency=jpy" in link and "since=2025-04-01" in link
    response = get("/finance/months", **Q2)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "2025-04-01 – 2025-06-30" in html and 'action="/finance/months"' in html
    failure = table(html, "months-failure-jpy")
    may = re.search(r'<tr data-month="2025-05">.*?</tr>', failure, re.S).group(0)
    assert ">1 <span" in may and "100.0%" in may and "5d" in may  # in_j2, failed in May, paid in June
    recovery = table(html, "months-recovery-jpy")
    assert re.search(r'<tr data-month="2025-05">.*?0\.0%.*?</tr>', recovery, re.S)
    june = re.search(r'<tr data-month="2025-06">.*?</tr>', recovery, re.S).group(0)
    assert "3d" in june and "4d 14h" in june  # median and 90th percentile


def test_months_json_has_both_views_per_currency_for_whole_months(get):
    body = get("/finance/months.json", since="2025-05-20", until="2025-06-03", currency="jpy").get_json()
    assert body["months"] == {"since": "2025-05-01T00:00:00Z", "until": "2025-07-01T00:00:00Z"}
    may, june = body["by_first_failure"]["jpy"]
    assert (may["month"], may["recovered"], may["recovered_amount"], may["still_open"]) == ("2025-05", 1, "12000", 0)
    assert (june["still_open"], june["open_amount_minor"], june["recovery_rate"]) == (1, 4000, 1.0)
    assert [m["recoveries"] for m in body["by_recovery"]["jpy"]] == [0, 2]
    assert body["by_recovery"]["jpy"][1]["p90_seconds_to_recover"] == round(4.6 * 86400)
    assert get("/finance/months.json", since="never").status_code == 400


def test_months_page_with_a_bad_period_explains_and_falls_back(get):
    response = get("/finance/months", until="2025-02-30")
    assert response.status_code == 400 and "until must be a date" in response.get_data(as_text=True)

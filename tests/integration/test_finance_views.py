"""The finance pages over HTTP: auth, the dashboard, CSV and JSON with their filters, paging, streaming."""

from __future__ import annotations

import base64
import csv
import io
import re
import tracemalloc
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from tests.integration.test_finance_dataset import FINANCE_PASSWORD, FINANCE_USER, NOW, Q2, Q2_ROWS, seed
from webhook_app.clock import FrozenClock
from webhook_app.finance import export
from webhook_app.finance.period import parse_period
from webhook_app.finance.queries import Filters
from webhook_app.models import LedgerEntry
from webhook_app.providers import dashboard_links


@pytest.fixture
def clock():
    return FrozenClock(NOW)


@pytest.fixture
def finance_app(make_app):
    app = make_app(FINANCE_USERNAME=FINANCE_USER, FINANCE_PASSWORD=FINANCE_PASSWORD)
    seed(app.extensions["webhook_app"].db)
    return app


def basic(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(FINANCE_USER, FINANCE_PASSWORD)
PAGES = (
    "/finance",
    "/finance/months",
    "/finance/recoveries.csv",
    "/finance/recoveries.json",
    "/finance/at-risk.json",
    "/finance/lost.json",
    "/finance/months.json",
)


@pytest.fixture
def get(finance_app):
    client = finance_app.test_client()
    return lambda path, **params: client.get(path, query_string=params, headers=AUTH)


def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


# -- auth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PAGES)
def test_pages_are_off_and_say_so_without_finance_credentials(make_app, path):
    client = make_app().test_client()
    response = client.get(path, headers=AUTH)
    assert response.status_code == 404
    assert "FINANCE_USERNAME and FINANCE_PASSWORD" in response.get_data(as_text=True)


def test_pages_stay_off_when_only_the_username_is_set(make_app):
    response = make_app(FINANCE_USERNAME="finance").test_client().get("/finance", headers=AUTH)
    assert response.status_code == 404


@pytest.mark.parametrize("path", PAGES)
def test_pages_answer_401_with_a_basic_challenge_without_credentials(finance_app, path):
    response = finance_app.test_client().get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="Finance"')
    assert "recovered" not in response.get_data(as_text=True).lower()


@pytest.mark.parametrize(
    "headers",
    [
        basic(FINANCE_USER, "wrong"),
        basic("someone", FINANCE_PASSWORD),
        basic(FINANCE_USER, FINANCE_PASSWORD + "x"),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!notbase64"},
    ],
)
def test_wrong_credentials_are_refused(finance_app, headers):
    response = finance_app.test_client().get("/finance", headers=headers)
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers


def test_responses_are_not_cached(get):
    for path in PAGES:
        assert get(path).headers["Cache-Control"] == "no-store"


# -- dashboard ------------------------------------------------------------------------------------
def test_dashboard_shows_each_currency_separately_with_its_figures_and_chart(get):
    response = get("/finance", **Q2)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "2025-04-01 – 2025-06-30" in html
    usd = section(html, "usd")
    assert "$43.00" in usd and "$168.00 recovered" in usd and "$125.00 refunded</span> or credited" in usd
    assert "60.0%" in usd and "62.7% by amount" in usd  # 3 of 5 settled cases; 168 of 268 dollars
    assert "2d" in usd  # median time to recover
    assert "$100.00" in usd and "2 cases: 1 uncollectible, 1 void" in usd
    assert "$40.00" in usd and "at risk in 2 open cases" in usd
    jpy = section(html, "jpy")
    assert "¥15,800" in jpy and "¥17,800 recovered" in jpy and "75.0%" in jpy and "¥3,000" in jpy
    assert "3d" in jpy
    assert "€12.50" in section(html, "eur")
    # The chart is inline SVG (works offline, no scripts): one per currency, bars with titles.
    assert html.count('<svg class="chart-svg"') == 3
    assert "Week of 2025-04-07: recovered $49.00" in usd
    assert "Week of 2025-05-26: refunded / credited $25.00" in usd
    assert "<script" not in html and "http://" not in html.replace("http://localhost", "")


def section(html: str, currency: str) -> str:
    match = re.search(rf'<section class="currency" id="currency-{currency}".*?</section>', html, re.S)
    assert match, f"no section for {currency}"
    return match.group(0)


def test_dashboard_default_period_is_the_last_90_days(get):
    html = get("/finance").get_data(as_text=True)
    assert "2025-04-02 – 2025-06-30" in html
    assert 'class="active" aria-current="true">Last 90 days' in html


def test_dashboard_table_links_to_the_stripe_dashboard_with_test_paths_for_test_data(get):
    html = get("/finance", **Q2).get_data(as_text=True)
    assert 'href="https://dashboard.stripe.com/test/invoices/in_u1"' in html
    assert 'href="https://dashboard.stripe.com/test/customers/cus_u1"' in html
    assert 'href="https://dashboard.stripe.com/invoices/in_e1"' in html  # live mode: no /test/
    assert 'href="https://dashboard.stripe.com/customers/cus_e1"' in html


def ledger_amounts(html: str) -> list[str]:
    table = re.search(r'<table class="rtable ledger-table".*?</table>', html, re.S).group(0)
    return re.findall(r'<td data-label="Amount" class="num amount[^"]*">([^<]+)</td>', table)


def test_dashboard_table_sorts_by_date_and_amount_on_the_server(get):
    newest_first = ledger_amounts(get("/finance", **Q2).get_data(as_text=True))
    assert len(newest_first) == Q2_ROWS
    assert newest_first[:3] == ["$20.00", "¥800", "-¥2,000"]  # 06-20, 06-10, 06-05
    oldest_first = ledger_amounts(get("/finance", sort="date", **Q2).get_data(as_text=True))
    assert oldest_first == list(reversed(newest_first))
    by_amount = ledger_amounts(get("/finance", sort="-amount", currency="usd", **Q2).get_data(as_text=True))
    assert by_amount == ["$99.00", "$49.00", "$20.00", "-$25.00", "-$100.00"]


def test_dashboard_sorts_by_amount_only_within_one_currency(get):
    """¥12,000 is not more than $99.00: across currencies the amount header is no link; asking anyway says why."""
    html = get("/finance", **Q2).get_data(as_text=True)
    assert 'id="sort-amount" title="Choose one currency to sort by amount"' in html
    response = get("/finance", sort="-amount", **Q2)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "sorting by amount needs one currency" in text
    assert ledger_amounts(text)[:3] == ["$20.00", "¥800", "-¥2,000"]  # the filters stay; newest first instead
    assert 'id="sort-amount" href=' not in text
    with_currency = get("/finance", currency="jpy", **Q2).get_data(as_text=True)
    assert re.search(r'<a href="[^"]*lost_sort=-amount[^"]*" id="lost-sort-amount">', with_currency)
    assert re.search(r'<a href="[^"]*sort=-amount[^"]*" id="sort-amount">', with_currency)


def test_dashboard_table_paginates_with_next_and_previous_links(get, finance_app, monkeypatch):
    monkeypatch.setattr("webhook_app.finance.views.HTML_PAGE_SIZE", 4)
    first = get("/finance", **Q2).get_data(as_text=True)
    seen = ledger_amounts(first)
    html = first
    while 'id="page-next"' in html:
        url = re.search(r'<a href="([^"]+)" id="page-next"', html).group(1).replace("&amp;", "&")
        html = finance_app.test_client().get(url, headers=AUTH).get_data(as_text=True)
        seen += ledger_amounts(html)
    assert len(seen) == Q2_ROWS and seen[:4] == ledger_amounts(first)
    back = re.search(r'<a href="([^"]+)" id="page-prev"', html).group(1).replace("&amp;", "&")
    previous = finance_app.test_client().get(back, headers=AUTH).get_data(as_text=True)
    assert ledger_amounts(previous) == seen[4:8]


def test_dashboard_with_a_bad_period_explains_and_falls_back(get):
    response = get("/finance", since="2025-13-01")
    assert response.status_code == 400
    assert "since must be a date" in response.get_data(as_text=True)


def test_dashboard_for_a_period_without_activity_says_so(get):
    html = get("/finance", since="2024-01-01", until="2024-01-31").get_data(as_text=True)
    assert 'id="no-activity"' in html and "No ledger rows in this period." in html


def test_dashboard_passes_the_content_security_policy(get):
    response = get("/finance", **Q2)
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert " style=" not in html and "<style" not in html
    assert "/static/finance.css" in html


# -- CSV --------------------------------------------------------------------------------------------
def test_csv_has_every_row_of_the_period_with_minor_units_decimals_and_utc_times(get):
    response = get("/finance/recoveries.csv", **Q2)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed
    assert 'filename="recoveries_2025-04-01_2025-06-30.csv"' in response.headers["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == Q2_ROWS
    assert [r["recovered_at"] for r in rows] == sorted(r["recovered_at"] for r in rows)
    by_key = {r["entry_key"]: r for r in rows}
    u1 = by_key["recovery:in_u1"]
    assert (u1["amount_minor"], u1["amount"], u1["currency"]) == ("4900", "49.00", "usd")
    assert u1["recovered_at"] == "2025-04-10T10:00:00Z" and u1["first_failed_at"] == "2025-04-08T10:00:00Z"
    assert (u1["seconds_to_recover"], u1["attribution"], u1["livemode"]) == ("172800", "link_click", "false")
    assert u1["invoice_url"] == "https://dashboard.stripe.com/test/invoices/in_u1"
    j2 = by_key["recovery:in_j2"]
    assert (j2["amount_minor"], j2["amount"]) == ("12000", "12000")  # JPY has no minor unit
    refund = by_key["refund:ch_u2:2500"]
    assert (refund["kind"], refund["amount_minor"], refund["amount"]) == ("refund", "-2500", "-25.00")
    assert by_key["credit_note:cn_j2"]["amount"] == "-2000"
    assert by_key["recovery:in_e1"]["livemode"] == "true"


def test_csv_fields_match_the_json_fields_row_for_row(get):
    csv_rows = read_csv(get("/finance/recoveries.csv", **Q2))
    json_rows = {r["entry_key"]: r for r in get("/finance/recoveries.json", limit=100, **Q2).get_json()["data"]}
    for row in csv_rows:
        expected = {
            k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in json_rows[row["entry_key"]].items()
        }
        assert row == {k: expected[k] for k in row}


def test_csv_filters_by_period_currency_and_mode(get):
    jpy = read_csv(get("/finance/recoveries.csv", currency="JPY", **Q2))
    assert sorted(r["entry_key"] for r in jpy) == [
        "credit_note:cn_j2",
        "recovery:in_j1",
        "recovery:in_j2",
        "recovery:in_j3",
    ]
    april = read_csv(get("/finance/recoveries.csv", since="2025-04-01", until="2025-04-30"))
    assert [r["entry_key"] for r in april] == ["refund:ch_u0:10000", "recovery:in_u1", "recovery:in_j1"]
    live = read_csv(get("/finance/recoveries.csv", mode="live", **Q2))
    assert [r["entry_key"] for r in live] == ["recovery:in_e1"]
    instant = read_csv(get("/finance/recoveries.csv", since="2025-04-10T10:00:00Z", until="2025-04-10T10:00:01Z"))
    assert [r["entry_key"] for r in instant] == ["recovery:in_u1"]


@pytest.mark.parametrize(
    "params",
    [{"since": "yesterday"}, {"currency": "dollars"}, {"mode": "prod"}, {"since": "2025-05-01", "until": "2025-04-01"}],
)
def test_bad_filters_are_a_400_with_a_reason(get, params):
    for path in ("/finance/recoveries.csv", "/finance/recoveries.json"):
        response = get(path, **params)
        assert response.status_code == 400, (path, params)
    assert get("/finance/recoveries.json", **params).get_json()["error"] == "invalid_parameter"


def bulk_rows(db, n: int, start: datetime, amount: int = 1000, currency: str = "usd") -> None:
    rows = [
        dict(
            provider="stripe",
            entry_key=f"recovery:in_bulk_{i}",
            kind="recovery",
            invoice_id=f"in_bulk_{i}",
            customer_id=f"cus_bulk_{i % 97}",
            amount=amount,
            currency=currency,
            livemode=False,
            first_failed_at=start,
            recovered_at=start + timedelta(seconds=i),
            seconds_to_recover=i,
            attempts=1,
            messages_sent=1,
            attribution="link_click",
            created_at=start,
        )
        for i in range(n)
    ]
    with db.engine.begin() as conn:
        conn.execute(insert(LedgerEntry.__table__), rows)


def test_csv_is_streamed_in_batches_without_holding_all_rows_in_memory(finance_app):
    svc = finance_app.extensions["webhook_app"]
    n = 15_000
    bulk_rows(svc.db, n, datetime(2024, 1, 1))
    f = Filters(parse_period("2024-01-01", "2024-01-31", NOW))
    with finance_app.app_context():
        tracemalloc.start()
        try:
            lines = 0
            chunks = 0
            for chunk in export.iter_csv(svc.db, f, dashboard_links(svc.providers), batch_size=500):
                lines += chunk.count("\r\n")
                chunks += 1
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert lines == n + 1 and chunks >= n // 500
    # 15,000 rows held at once take about 14 MB as Python objects (measured); streaming 500 at a time ~2 MB.
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_csv_stream_over_http_returns_every_row_once_in_order(get, finance_app, monkeypatch):
    monkeypatch.setattr(export, "BATCH_SIZE", 7)
    bulk_rows(finance_app.extensions["webhook_app"].db, 50, datetime(2024, 2, 1))
    rows = read_csv(get("/finance/recoveries.csv", since="2024-02-01", until="2024-02-01"))
    assert [r["entry_key"] for r in rows] == [f"recovery:in_bulk_{i}" for i in range(50)]


# -- JSON -------------------------------------------------------------------------------------------
def test_json_pages_through_every_row_with_an_opaque_cursor(get):
    seen, cursor, pages = [], None, 0
    while True:
        params = dict(Q2, limit=3, **({"cursor": cursor} if cursor else {}))
        body = get("/finance/recoveries.json", **params).get_json()
        pages += 1
        seen += body["data"]
        cursor = body["next_cursor"]
        assert body["has_more"] == (cursor is not None)
        if not cursor:
            break
    assert pages == 4 and len(seen) == Q2_ROWS and len({r["entry_key"] for r in seen}) == Q2_ROWS
    assert [r["recovered_at"] for r in seen] == sorted((r["recovered_at"] for r in seen), reverse=True)
    assert body["filters"] == {
        "since": "2025-04-01T00:00:00Z",
        "until": "2025-07-01T00:00:00Z",
        "currency": None,
        "mode": None,
        "provider": None,
    }
    first = seen[0]
    assert first["entry_key"] == "recovery:in_u3" and first["amount_minor"] == 2000 and first["amount"] == "20.00"
    assert first["attribution"] == "out_of_band" and first["recovered_at"] == "2025-06-20T08:00:00Z"


def test_json_previous_cursor_returns_the_page_before(get):
    first = get("/finance/recoveries.json", limit=4, **Q2).get_json()
    assert first["previous_cursor"] is None
    second = get("/finance/recoveries.json", limit=4, cursor=first["next_cursor"], **Q2).get_json()
    back = get("/finance/recoveries.json", limit=4, cursor=second["previous_cursor"], **Q2).get_json()
    assert [r["entry_key"] for r in back["data"]] == [r["entry_key"] for r in first["data"]]
    assert back["previous_cursor"] is None


def test_json_sorted_by_amount_pages_ties_without_losing_or_repeating_rows(get, finance_app):
    bulk_rows(finance_app.extensions["webhook_app"].db, 25, datetime(2024, 3, 1), amount=1000)
    seen, cursor = [], None
    while True:
        params = dict(since="2024-03-01", until="2024-03-01", currency="usd", sort="amount", limit=7)
        body = get("/finance/recoveries.json", **params, **({"cursor": cursor} if cursor else {})).get_json()
        seen += [r["entry_key"] for r in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(f"recovery:in_bulk_{i}" for i in range(25)) and len(seen) == 25


def test_json_filters_by_currency_and_mode(get):
    jpy = get("/finance/recoveries.json", currency="jpy", sort="-amount", **Q2).get_json()
    assert [r["amount_minor"] for r in jpy["data"]] == [12000, 5000, 800, -2000]
    assert [r["amount"] for r in jpy["data"]] == ["12000", "5000", "800", "-2000"]
    live = get("/finance/recoveries.json", mode="live", **Q2).get_json()
    assert [r["invoice_url"] for r in live["data"]] == ["https://dashboard.stripe.com/invoices/in_e1"]


@pytest.mark.parametrize("params", [{"cursor": "not-a-cursor"}, {"limit": "0"}, {"limit": "501"}, {"sort": "customer"}])
def test_json_rejects_bad_cursors_limits_and_sorts(get, params):
    response = get("/finance/recoveries.json", **params)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_parameter"

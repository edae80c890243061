"""Team alerts: plain rendering without customer emails, per-currency thresholds, ALERT_MIN_AMOUNT parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook_app.alerts import (
    Alert,
    AlertKind,
    CurrencyTotal,
    alert_key,
    at_or_above,
    failure_alert_kinds,
    parse_min_amounts,
    render_blocks,
    render_text,
    slack_escape,
)
from webhook_app.declines import DeclineClass


def invoice_alert(kind: AlertKind = AlertKind.LARGE_FAILURE, **overrides: Any) -> Alert:
    fields: dict[str, Any] = dict(
        kind=kind,
        provider="stripe",
        customer_id="cus_Acme",
        customer_name="Acme Cloud Ltd",
        invoice_id="in_1Acme",
        invoice_number="ACME-0042",
        amount=125_000,
        currency="usd",
        decline_class=DeclineClass.INSUFFICIENT_FUNDS,
        decline_code="insufficient_funds",
        dashboard_url="https://dashboard.stripe.com/invoices/in_1Acme",
    )
    fields.update(overrides)
    return Alert(**fields)


def blocks_text(alert: Alert) -> str:
    return json.dumps(render_blocks(alert), ensure_ascii=False)


# -- rendering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,expected",
    [
        (AlertKind.LARGE_FAILURE, "Large payment failed (Stripe): $1,250.00 from Acme Cloud Ltd (cus_Acme) failed"),
        (AlertKind.DO_NOT_CONTACT, "No recovery email was sent"),
        (AlertKind.FINAL_NOTICE, "Acme Cloud Ltd (cus_Acme) was sent the final notice for $1,250.00"),
        (AlertKind.RECOVERED, "Payment recovered (Stripe): $1,250.00 from Acme Cloud Ltd (cus_Acme) came back"),
    ],
)
def test_each_kind_says_what_happened_with_the_amount_customer_and_invoice(kind: AlertKind, expected: str) -> None:
    text = render_text(invoice_alert(kind))
    assert expected in text
    assert "ACME-0042 (in_1Acme)" in text
    assert text.endswith("https://dashboard.stripe.com/invoices/in_1Acme")


def test_a_failure_alert_gives_the_decline_in_plain_words_and_its_code() -> None:
    text = render_text(invoice_alert())
    assert "Reason: insufficient funds (insufficient_funds)." in text
    dnc = render_text(
        invoice_alert(AlertKind.DO_NOT_CONTACT, decline_class=DeclineClass.DO_NOT_CONTACT, decline_code="fraudulent")
    )
    assert "a fraud signal or a withdrawn authorization (fraudulent)" in dnc


def test_blocks_carry_a_header_the_summary_the_facts_and_the_dashboard_link() -> None:
    blocks = render_blocks(invoice_alert())
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "Large payment failed", "emoji": False}
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert fields == [
        "*Amount*\n$1,250.00",
        "*Customer*\nAcme Cloud Ltd (cus_Acme)",
        "*Invoice*\nACME-0042 (in_1Acme)",
        "*Decline*\ninsufficient funds (insufficient_funds)",
        "*Provider*\nStripe",
    ]
    assert blocks[3]["elements"][0]["text"] == (
        "<https://dashboard.stripe.com/invoices/in_1Acme|Open in the Stripe dashboard>"
    )


@pytest.mark.parametrize(
    "amount,currency,shown",
    [(500, "jpy", "¥500"), (4900, "eur", "€49.00"), (1500, "kwd", "KWD 1.500"), (123_456_789, "usd", "$1,234,567.89")],
)
def test_amounts_are_formatted_for_their_currency(amount: int, currency: str, shown: str) -> None:
    alert = invoice_alert(amount=amount, currency=currency)
    assert shown in render_text(alert)
    assert f"*Amount*\\n{shown}" in blocks_text(alert)


def test_a_recovered_alert_without_decline_or_dashboard_leaves_them_out() -> None:
    alert = invoice_alert(AlertKind.RECOVERED, decline_class=None, decline_code=None, dashboard_url=None)
    assert "Reason" not in render_text(alert) and "http" not in render_text(alert)
    assert [b["type"] for b in render_blocks(alert)] == ["header", "section", "section"]
    assert "*Decline*" not in blocks_text(alert)


@pytest.mark.parametrize("name", ["ada@example.com", "Ada Lovelace <ada.lovelace@example.co.uk>"])
def test_no_customer_email_ever_appears(name: str) -> None:
    alert = invoice_alert(customer_name=name)
    for rendered in (render_text(alert), blocks_text(alert)):
        assert "@" not in rendered and "example.co" not in rendered
        assert "[email]" in rendered


def test_alerts_have_no_email_field_at_all() -> None:
    assert not any("email" in name for name in Alert.__dataclass_fields__)


def test_customer_text_cannot_become_slack_markup_or_break_lines() -> None:
    alert = invoice_alert(customer_name="Eve <!channel> & <https://evil.example|click>\n\x07Inc")
    blocks = blocks_text(alert)
    assert "<!channel>" not in blocks and "<https://evil" not in blocks
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; Inc" in blocks
    assert "\n\x07" not in render_text(alert)


def test_slack_escape_handles_the_three_markup_characters() -> None:
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "https://x.example/a|b", "https://x.example/a>b", "https://x y", "ftp://x"]
)
def test_a_dashboard_url_slack_would_misread_is_left_out(url: str) -> None:
    alert = invoice_alert(dashboard_url=url)
    assert url not in render_text(alert)
    assert all(b["type"] != "context" for b in render_blocks(alert))


def test_long_values_fit_slacks_block_limits() -> None:
    alert = invoice_alert(customer_name="N" * 5000, invoice_number="9" * 5000, decline_code="c" * 500)
    blocks = render_blocks(alert)
    assert len(blocks[0]["text"]["text"]) <= 150
    assert len(blocks[1]["text"]["text"]) <= 3000
    assert len(blocks[2]["fields"]) <= 10 and all(len(f["text"]) <= 2000 for f in blocks[2]["fields"])
    assert "N" * 101 not in render_text(alert)


def test_a_missing_name_or_number_falls_back_to_the_ids() -> None:
    text = render_text(invoice_alert(customer_name=None, invoice_number=None))
    assert "$1,250.00 from cus_Acme failed on invoice in_1Acme." in text


def test_the_provider_is_named() -> None:
    assert "(Paddle)" in render_text(invoice_alert(provider="paddle"))
    assert "Open in the Chargebee dashboard" in blocks_text(invoice_alert(provider="chargebee"))


# -- the digest ----------------------------------------------------------------------------------------


def digest(*totals: CurrencyTotal) -> Alert:
    return Alert(AlertKind.DIGEST, period="2026-05-18", totals=totals)


def test_the_digest_lists_each_currency_on_its_own_without_adding_them_up() -> None:
    alert = digest(
        CurrencyTotal("usd", 250_000, 5, 120_000, 2, 130_000, 3), CurrencyTotal("JPY", 50_000, 1, 0, 0, 50_000, 1)
    )
    text = render_text(alert)
    assert text.startswith("Recovery digest 2026-05-18 (Stripe): ")
    assert "USD: $2,500.00 failed (5), $1,200.00 recovered (2), $1,300.00 still open (3)" in text
    assert "JPY: ¥50,000 failed (1), ¥0 recovered (0), ¥50,000 still open (1)" in text
    blocks = render_blocks(alert)
    assert blocks[0]["text"]["text"] == "Recovery digest 2026-05-18"
    usd = blocks[2]
    assert usd["text"]["text"] == "*USD*"
    assert [f["text"] for f in usd["fields"]] == [
        "*Failed*\n$2,500.00 (5)",
        "*Recovered*\n$1,200.00 (2)",
        "*Still open*\n$1,300.00 (3)",
    ]


def test_an_empty_digest_says_so() -> None:
    assert "no failed or recovered payments" in render_text(digest())


def test_a_digest_of_many_currencies_stays_within_slacks_fifty_blocks() -> None:
    codes = [a + b + c for a in "abc" for b in "def" for c in "ghijk"]  # 45 made-up codes
    blocks = render_blocks(digest(*(CurrencyTotal(code, 100, 1) for code in codes)))
    assert len(blocks) <= 50
    assert blocks[-1]["elements"][0]["text"] == "and 5 more currencies"


# -- the Alert value -------------------------------------------------------------------------------------


def test_kinds_and_classes_given_as_strings_are_coerced_and_currencies_lowercased() -> None:
    alert = Alert("recovered", amount=100, currency="EUR", decline_class="technical")  # type: ignore[arg-type]
    assert alert.kind is AlertKind.RECOVERED and alert.decline_class is DeclineClass.TECHNICAL
    assert alert.currency == "eur"


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "large_failure", "currency": "usd"},
        {"kind": "recovered", "amount": 100},
        {"kind": "recovered", "amount": 100, "currency": "dollars"},
        {"kind": "panic", "amount": 100, "currency": "usd"},
    ],
)
def test_an_invoice_alert_without_amount_or_with_a_bad_currency_or_kind_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Alert(**fields)


def test_alert_keys_make_each_alert_once_per_invoice_or_digest_period() -> None:
    assert alert_key(invoice_alert()) == "alert:large_failure:stripe:in_1Acme"
    assert alert_key(invoice_alert()) == alert_key(invoice_alert(amount=1))
    assert alert_key(invoice_alert(AlertKind.RECOVERED)) != alert_key(invoice_alert())
    assert alert_key(invoice_alert(), episode=2) == "alert:large_failure:stripe:in_1Acme:2"
    assert alert_key(digest()) == "alert:digest:2026-05-18"


# -- thresholds ----------------------------------------------------------------------------------------

THRESHOLDS = {"usd": 50_000, "eur": 45_000, "jpy": 50_000}


@pytest.mark.parametrize(
    "amount,currency,large",
    [
        (49_999, "usd", False),
        (50_000, "usd", True),
        (50_001, "usd", True),
        (44_999, "eur", False),
        (45_000, "EUR", True),
        (45_001, "eur", True),
        (49_999, "jpy", False),  # ¥49,999: JPY has no minor unit, so 50000 means ¥50,000
        (50_000, "jpy", True),
        (50_001, "jpy", True),
        (10_000_000, "gbp", False),  # no threshold for GBP: never "large", however much
    ],
)
def test_at_or_above_per_currency_just_under_at_and_above(amount: int, currency: str, large: bool) -> None:
    assert at_or_above(amount, currency, THRESHOLDS) is large


def test_failure_alert_kinds() -> None:
    dnc = DeclineClass.DO_NOT_CONTACT
    assert failure_alert_kinds(dnc, 60_000, "usd", THRESHOLDS) == (AlertKind.DO_NOT_CONTACT, AlertKind.LARGE_FAILURE)
    assert failure_alert_kinds(dnc, 100, "usd", THRESHOLDS) == (AlertKind.DO_NOT_CONTACT,)
    assert failure_alert_kinds(None, 60_000, "usd", THRESHOLDS) == (AlertKind.LARGE_FAILURE,)
    assert failure_alert_kinds(DeclineClass.TECHNICAL, 100, "usd", {}) == ()


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("usd=50000,eur=45000", {"usd": 50_000, "eur": 45_000}),
        (" USD = 50000 , Eur=45000 ,", {"usd": 50_000, "eur": 45_000}),
        ("jpy=50000", {"jpy": 50_000}),
        ("usd=0", {"usd": 0}),
        ("", {}),
        (None, {}),
        (" , ", {}),
    ],
)
def test_parse_min_amounts(raw: str | None, expected: dict[str, int]) -> None:
    assert parse_min_amounts(raw) == expected


@pytest.mark.parametrize(
    "raw,named",
    [
        ("usd", "entry 'usd' must look like currency=amount"),
        ("usd50000", "entry 'usd50000' must look like currency=amount"),
        ("=50000", "entry '=50000' must look like currency=amount"),
        ("usd=", "entry 'usd=' must look like currency=amount"),
        ("dollars=5", "'dollars' is not a three-letter ISO 4217 currency code"),
        ("us1=5", "'us1' is not a three-letter ISO 4217 currency code"),
        ("usd=500.00", "the amount for usd must be a whole number of minor units, e.g. usd=50000 for $500.00"),
        ("usd=50,000", "entry '000' must look like currency=amount"),
        ("usd=-5", "the amount for usd must be a whole number of minor units"),
        ("jpy=5e4", "e.g. jpy=50000 for ¥50,000; got '5e4'"),
        ("usd=50_000", "the amount for usd must be a whole number"),
        ("usd=99999999999999999999", "the amount for usd must be a whole number"),
        ("usd=1,USD=2", "names usd twice"),
    ],
)
def test_parse_min_amounts_names_each_problem(raw: str, named: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_min_amounts(raw)
    assert str(raised.value).startswith("ALERT_MIN_AMOUNT")
    assert named in str(raised.value)


def test_parse_min_amounts_reports_every_problem_at_once_under_the_given_name() -> None:
    with pytest.raises(ValueError) as raised:
        parse_min_amounts("usd=1.5,xx=1,eur=3", name="ALERT_THRESHOLDS")
    message = str(raised.value)
    assert message.count("ALERT_THRESHOLDS") == 2 and "usd" in message and "'xx'" in message

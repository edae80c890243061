"""Recovery that knows why the payment failed, and tells the team what matters.

The real Stripe SDK reads each failure's reason from the Stripe stand-in (the invoice's PaymentIntent
before basil, its invoice payments from basil on), the worker picks the message's template and timing
by the decline's class, and team alerts go to a Slack stand-in; every stand-in is served on a real
socket. On SQLite and PostgreSQL where the database decides (one alert ever, the digest); on SQLite
otherwise.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.fixtures import stripe_declines as sd
from tests.fixtures import stripe_objects as so
from tests.fixtures.inbox import store_stripe
from tests.integration.ops_env import open_ops_env
from tests.standins import serve
from tests.standins.slack import SlackStandIn
from webhook_app.clock import FrozenClock, from_unix
from webhook_app.declines import DeclineClass
from webhook_app.models import DunningCase, LedgerEntry, Notification, TeamAlert
from webhook_app.worker import Worker

TEMPLATES = ",".join(
    [
        "first=tx_first",
        "reminder=tx_reminder",
        "first.insufficient_funds=tx_first_funds",
        "first.update_card=tx_first_card",
        "first.contact_bank=tx_first_bank",
        "first.technical=tx_first_technical",
        "alert=tx_team_alert",
    ]
)
CASES = {case.name: case for case in sd.CASES}


@pytest.fixture
def slack():
    standin = SlackStandIn()
    served = serve(standin.app)
    standin.base = served.url
    yield standin
    served.stop()


def env_for(database_url, clock, slack=None, **overrides):
    settings = dict(LOOPS_TRANSACTIONAL_IDS=TEMPLATES, **overrides)
    if slack is not None:
        settings["ALERT_SLACK_WEBHOOK_URL"] = slack.url(slack.base)
    return open_ops_env(database_url, clock, **settings)


@pytest.fixture
def make_env(request):
    opened = []

    def _make(database_url, clock, slack=None, **overrides):
        env, close = env_for(database_url, clock, slack, **overrides)
        opened.append(close)
        return env

    yield _make
    for close in reversed(opened):
        close()


def failed_at_clock() -> FrozenClock:
    return FrozenClock(from_unix(sd.FAILED_AT) + timedelta(seconds=30))


def deliver_legacy(env, case: sd.DeclineCase, **fields) -> dict:
    """A pre-basil `invoice.payment_failed` whose invoice names its PaymentIntent by id, as webhooks do."""
    invoice = sd.legacy_invoice(case, expand=(), **fields)
    intent, _charge = sd.payment_intent(case, invoice_id=invoice["id"])
    intent["id"] = invoice["payment_intent"]
    env.stripe.payment_intents[intent["id"]] = intent
    env.stripe.add_invoice(invoice)
    event = so.event("invoice.payment_failed", invoice, api_version=so.LEGACY, created=sd.FAILED_AT)
    store_stripe(env.svc.db, event, env.svc.clock.now(), env.svc.settings)
    return invoice


def deliver_basil(env, case: sd.DeclineCase, times: int = 1, **fields) -> dict:
    """A basil `invoice.payment_failed`: the reason is only in the invoice's payments."""
    invoice = sd.basil_invoice(**fields)
    env.stripe.invoice_payments[invoice["id"]] = sd.invoice_payments(case, invoice_id=invoice["id"])["data"]
    env.stripe.add_invoice(invoice)
    for n in range(times):  # Stripe retries a delivery it did not see answered: the same event id
        event = so.event("invoice.payment_failed", invoice, api_version=so.BASIL, created=sd.FAILED_AT)
        event["id"] = f"evt_{invoice['id']}"
        stored = store_stripe(env.svc.db, event, env.svc.clock.now(), env.svc.settings)
        assert stored == (n == 0)
    return invoice


def sent(env) -> list[dict]:
    """What Loops accepted: each message's body."""
    return [m["body"] for m in env.loops.messages]


@pytest.mark.parametrize(
    ("case_name", "template", "generation"),
    [
        ("insufficient_funds", "tx_first_funds", "legacy"),
        ("insufficient_funds", "tx_first_funds", "basil"),
        ("expired_card", "tx_first_card", "legacy"),
        ("lost_card", "tx_first_card", "basil"),
        ("do_not_honor", "tx_first_bank", "basil"),
        ("generic_decline", "tx_first_bank", "legacy"),
    ],
)
def test_the_first_message_uses_the_template_of_its_decline_class(
    sqlite_url, make_env, case_name, template, generation
):
    env = make_env(sqlite_url, failed_at_clock())
    case = CASES[case_name]
    (deliver_legacy if generation == "legacy" else deliver_basil)(env, case)

    Worker(env.svc).run_once()

    [message] = sent(env)
    assert message["transactionalId"] == template
    data = message["dataVariables"]
    assert data["declineClass"] == case.expected.value
    assert data["adviceCode"] == (case.advice_code or "")
    # Lost and stolen cards read as a generic decline to the customer (Stripe asks so); the team sees the code.
    assert data["declineCode"] in (case.decline_code or case.code, "generic_decline")


def test_a_class_without_its_own_template_falls_back_to_the_step_template(sqlite_url, make_env):
    env = make_env(sqlite_url, failed_at_clock())
    deliver_basil(env, CASES["authentication_required"])  # no first.authentication configured

    Worker(env.svc).run_once()

    [message] = sent(env)
    assert message["transactionalId"] == "tx_first"
    assert message["dataVariables"]["declineClass"] == "authentication"


def test_a_technical_decline_waits_for_the_providers_next_retry(sqlite_url, make_env):
    clock = failed_at_clock()
    env = make_env(sqlite_url, clock)
    deliver_basil(env, CASES["processing_error"])

    Worker(env.svc).run_once()
    assert sent(env) == []  # Stripe retries in three days; the card is probably fine
    with env.svc.db.session() as s:
        first = s.scalars(select(Notification).where(Notification.step == 0)).one()
    assert first.run_at == from_unix(sd.NEXT_RETRY) + timedelta(hours=1)

    clock.current = first.run_at  # the retry failed too: the customer hears now
    Worker(env.svc).run_once()
    [message] = sent(env)
    assert message["transactionalId"] == "tx_first_technical"


def test_an_unknown_reason_sends_the_plain_first_message_at_once(sqlite_url, make_env):
    env = make_env(sqlite_url, failed_at_clock())
    invoice = sd.basil_invoice()  # no invoice payments listed: nothing known
    env.stripe.add_invoice(invoice)
    store_stripe(env.svc.db, so.event("invoice.payment_failed", invoice), env.svc.clock.now(), env.svc.settings)

    Worker(env.svc).run_once()

    [message] = sent(env)
    assert message["transactionalId"] == "tx_first" and message["dataVariables"]["declineClass"] == "unknown"


def test_a_fraudulent_failure_sends_no_customer_message_and_one_alert_even_delivered_three_times(
    database_url, make_env, slack
):
    env = make_env(database_url, failed_at_clock(), slack)
    invoice = deliver_basil(env, CASES["fraudulent"], times=1)
    Worker(env.svc).run_once()
    # ... then Stripe's own retries of the charge fail the same way (new events, same invoice), and a replay.
    for n in range(2):
        event = so.event("invoice.payment_failed", invoice, api_version=so.BASIL, created=sd.FAILED_AT + n + 1)
        store_stripe(env.svc.db, event, env.svc.clock.now(), env.svc.settings)
    assert env.cli("events", "replay", f"evt_{invoice['id']}").exit_code == 0
    Worker(env.svc).run_once()

    assert sent(env) == []
    assert len(slack.posts) == 1
    text = slack.posts[0]["body"]["text"]
    assert "not emailed" in text.lower() or "not contacted" in text.lower()
    assert "ada@example.com" not in json.dumps(slack.posts)  # the team gets names and links, never emails
    with env.svc.db.session() as s:
        case = s.scalars(select(DunningCase)).one()
        assert (case.decline_class, case.status) == ("do_not_contact", "open")
        assert s.scalars(select(Notification)).all() == []
    # A later payment is still a recovery, and the team hears the good news once.
    env.stripe.invoices[invoice["id"]] = {**invoice, "status": "paid", "amount_paid": 4900, "amount_remaining": 0}
    paid = so.event("invoice.paid", so.invoice(invoice_id=invoice["id"], status="paid", attempt_count=2))
    store_stripe(env.svc.db, paid, env.svc.clock.now(), env.svc.settings)
    Worker(env.svc).run_once()
    assert slack.posts[-1]["body"]["text"].startswith("Payment recovered (Stripe)")
    assert len(slack.posts) == 2


def test_a_campaign_leaves_a_do_not_contact_customer_alone(sqlite_url, make_env):
    from webhook_app.ops.campaign import CampaignOptions, run_campaign

    env = make_env(sqlite_url, failed_at_clock())
    deliver_basil(env, CASES["fraudulent"])
    Worker(env.svc).run_once()

    import io

    report = run_campaign(
        env.svc,
        CampaignOptions(stripe_rate=5000, progress_interval=3600),
        echo=lambda _: None,
        progress_stream=io.StringIO(),
        tty=False,
    )

    assert report.sent == 0 and sent(env) == []
    assert report.excluded == {"not to be contacted (the decline is a fraud or authorization signal)": 1}


@pytest.mark.parametrize(
    ("currency", "amount", "alerted"),
    [
        ("usd", 49_999, False),  # just under usd=50000
        ("usd", 50_000, True),  # at
        ("usd", 50_001, True),  # above
        ("jpy", 49_999, False),  # just under jpy=50000 (¥, no minor unit)
        ("jpy", 50_000, True),
        ("eur", 10**9, False),  # no threshold for eur: never "large" (no exchange rate is guessed)
    ],
)
def test_large_first_failures_alert_at_and_above_their_currencys_threshold(
    sqlite_url, make_env, slack, currency, amount, alerted
):
    env = make_env(sqlite_url, failed_at_clock(), slack, ALERT_MIN_AMOUNT="usd=50000,jpy=50000")
    deliver_basil(env, CASES["insufficient_funds"], amount_due=amount, currency=currency)

    Worker(env.svc).run_once()

    assert len(slack.posts) == int(alerted)
    if alerted:
        assert slack.posts[0]["body"]["text"].startswith("Large payment failed")


def test_a_final_notice_sent_is_reported_to_the_team(sqlite_url, make_env, slack):
    clock = failed_at_clock()
    env = make_env(sqlite_url, clock, slack, DUNNING_CADENCE_DAYS="0", DUNNING_FINAL_NOTICE_DAYS="2")
    deliver_basil(env, CASES["expired_card"])
    Worker(env.svc).run_once()
    assert len(sent(env)) == 1 and slack.posts == []

    clock.advance(days=2, minutes=1)
    Worker(env.svc).run_once()

    assert sent(env)[-1]["dataVariables"]["isFinalNotice"] == "true"
    assert [post["body"]["text"].split(" (")[0] for post in slack.posts] == ["Final notice sent"]


def test_team_alert_by_email_goes_through_the_messenger_once(sqlite_url, make_env):
    env = make_env(sqlite_url, failed_at_clock(), ALERT_EMAIL="ops@acme.test", ALERT_MIN_AMOUNT="usd=100")
    deliver_basil(env, CASES["insufficient_funds"], amount_due=4900)

    Worker(env.svc).run_once()
    Worker(env.svc).run_once()

    alerts = [m for m in sent(env) if m["email"] == "ops@acme.test"]
    assert len(alerts) == 1
    assert alerts[0]["dataVariables"]["subject"].startswith("Large payment failed")


def test_the_daily_digest_reports_yesterday_per_currency_once(database_url, make_env, slack):
    day = datetime(2026, 5, 4)
    clock = FrozenClock(day + timedelta(days=1, hours=8, minutes=5))
    env = make_env(database_url, clock, slack, ALERT_DIGEST_HOUR="8")
    with env.svc.db.session() as s:
        seed_day(s, day)

    Worker(env.svc).run_once()
    clock.advance(hours=3)
    Worker(env.svc).run_once()  # the same day: no second digest

    [post] = slack.posts
    text = post["body"]["text"]
    assert text.startswith("Recovery digest 2026-05-04")
    # Failed that day (first failures), recovered that day, still open at the end of it (older ones too).
    assert "USD: $149.00 failed (2), $49.00 recovered (1), $109.99 still open (2)" in text
    assert "JPY: ¥5,000 failed (1), ¥0 recovered (0), ¥5,000 still open (1)" in text
    with env.svc.db.session() as s:
        assert s.scalars(select(TeamAlert.period)).all() == ["2026-05-04"]


def seed_day(session, day: datetime) -> None:
    """Two USD failures (4,900 + 10,000) and one JPY failure on `day`; one USD recovery that day."""

    def case(invoice_id, currency, amount, status="open", customer="cus_D"):
        row = DunningCase(
            provider="stripe",
            invoice_id=invoice_id,
            customer_id=customer,
            currency=currency,
            amount_due=amount,
            status=status,
            first_failed_at=day + timedelta(hours=2),
            created_at=day,
            updated_at=day,
            attempt_count=1,
            episode=1,
            messages_sent=0,
            livemode=False,
        )
        session.add(row)
        return row

    recovered = case("in_d1", "usd", 4900, status="recovered")
    case("in_d2", "usd", 10000)
    case("in_d3", "jpy", 5000)
    case("in_old", "usd", 999)
    session.flush()
    session.get(DunningCase, recovered.id)
    session.add(
        LedgerEntry(
            provider="stripe",
            entry_key="recovery:in_d1",
            kind="recovery",
            case_id=recovered.id,
            invoice_id="in_d1",
            customer_id="cus_D",
            amount=4900,
            currency="usd",
            livemode=False,
            recovered_at=day + timedelta(hours=5),
            attempts=2,
            messages_sent=1,
            attribution="link_click",
            created_at=day + timedelta(hours=5),
        )
    )
    old = session.scalars(select(DunningCase).where(DunningCase.invoice_id == "in_old")).one()
    old.first_failed_at = day - timedelta(days=3)  # failed before the day: open, not counted as failed


def test_decline_classes_cover_the_listed_codes_in_both_generations():
    """The fixture set this file draws from names every class (guards the parametrizations above)."""
    assert {case.expected for case in sd.CASES} == set(DeclineClass)

"""Braintree through the whole core, on SQLite and PostgreSQL, against the XML stand-in on a real socket.

Intake (signed forms), the worker (translation reads the customer from the stand-in), one message per
failure episode, our /r/ link minting /pay/braintree/<token>, the campaign, doctor and finance.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import braintree
import pytest
from sqlalchemy import select

from tests.conftest import base_config
from tests.standins import serve
from tests.standins.braintree import MERCHANT_ID, PRIVATE_KEY, PUBLIC_KEY, BraintreeStandIn
from webhook_app.models import Click, DunningCase, Event, LedgerEntry, Notification
from webhook_app.ops.campaign import CampaignOptions, run_campaign
from webhook_app.ops.doctor import run_checks
from webhook_app.states import CaseStatus, EventStatus, NotificationStatus
from webhook_app.worker import Worker

KIND = braintree.WebhookNotification.Kind
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"}


@pytest.fixture
def bt():
    standin = BraintreeStandIn()
    served = serve(standin.app)
    standin.url = served.url
    try:
        yield standin
    finally:
        served.stop()


def braintree_config(standin: BraintreeStandIn) -> dict[str, str]:
    return {
        "BRAINTREE_MERCHANT_ID": MERCHANT_ID,
        "BRAINTREE_PUBLIC_KEY": PUBLIC_KEY,
        "BRAINTREE_PRIVATE_KEY": PRIVATE_KEY,
        "BRAINTREE_ENVIRONMENT": "sandbox",
        "BRAINTREE_API_BASE": standin.url,
    }


@pytest.fixture
def app(make_app, bt):
    return make_app(**braintree_config(bt))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def run(svc):
    return lambda: Worker(svc).run_once()


def at(clock, **delta: float) -> datetime:
    """The test clock's now (plus delta) as the aware time a notification carries."""
    return (clock.now() + timedelta(**delta)).replace(tzinfo=UTC)


@pytest.fixture
def past_due(bt):
    """Ada's 49.99 USD subscription, whose recurring charge just failed (Past Due)."""
    bt.add_customer("cust_ada", email="ada@example.com", first_name="Ada", last_name="Lovelace", country="GB")
    bt.add_subscription("cust_ada", subscription_id="sub_ada", price="49.99")
    failed = bt.fail_charge("sub_ada")
    return {"subscription": "sub_ada", "failed": failed["id"], "invoice_id": f"sub_ada:{failed['id']}"}


def rows(svc, model) -> list[Any]:
    with svc.db.session() as s:
        return list(s.scalars(select(model).order_by(model.id)).all())


def the_case(svc) -> DunningCase:
    [case] = rows(svc, DunningCase)
    return case


def failure(bt, client, clock, kind=KIND.SubscriptionChargedUnsuccessfully, **delta: float):
    form = bt.sample_notification(kind, "sub_ada", at(clock, **(delta or {"hours": -1})))
    response = client.post("/webhooks/braintree", data=form)
    assert response.status_code == 200, response.get_json()
    return response


# -- intake and the worker ----------------------------------------------------------------------------


def test_failed_charge_sends_one_message_with_our_link_the_balance_and_the_customers_name(
    svc, client, bt, past_due, run, messenger, clock
):
    failure(bt, client, clock, KIND.SubscriptionWentPastDue)
    failure(bt, client, clock, KIND.SubscriptionChargedUnsuccessfully)
    run()
    [message] = messenger.messages
    data = message.data_variables()
    assert message.email == "ada@example.com"
    assert data["updatePaymentUrl"].startswith("https://recover.example.test/r/")
    assert data["portalUrl"] == ""  # no page is minted for an email: only the /r/ link goes there
    assert (data["amountDue"], data["currency"], data["invoiceId"]) == ("$49.99", "USD", past_due["invoice_id"])
    assert data["customerName"] == "Ada Lovelace" and data["attemptCount"] == 1
    # Braintree's next attempt at the latest is the next billing date: no final notice with the first message.
    assert data["nextPaymentAttempt"] and data["isFinalNotice"] is False
    case = the_case(svc)
    assert (case.provider, case.subscription_id, case.customer_country) == ("braintree", "sub_ada", "GB")
    assert case.failure_reason == "2001 Insufficient Funds"
    assert {e.type for e in rows(svc, Event)} == {"subscription_went_past_due", "subscription_charged_unsuccessfully"}


def test_resends_duplicates_and_retries_of_one_episode_message_the_customer_once(
    svc, client, bt, past_due, run, messenger, clock
):
    form = bt.sample_notification(KIND.SubscriptionChargedUnsuccessfully, "sub_ada", at(clock, hours=-2))
    assert client.post("/webhooks/braintree", data=form).get_json()["duplicate"] is False
    assert client.post("/webhooks/braintree", data=form).get_json()["duplicate"] is True  # Braintree's resend
    run()
    bt.fail_charge("sub_ada")  # Braintree's automatic retry fails too: the same episode
    failure(bt, client, clock, hours=-1)
    run()
    assert len(messenger.messages) == 1
    case = the_case(svc)
    assert case.invoice_id == past_due["invoice_id"] and case.attempt_count == 2
    assert case.amount_due == 9998  # the balance grew by the retried cycle


def test_two_subscriptions_failing_together_go_out_in_one_message(svc, client, bt, past_due, run, messenger, clock):
    bt.add_subscription("cust_ada", subscription_id="sub_ada_team", price="19.00")
    bt.fail_charge("sub_ada_team")
    failure(bt, client, clock)
    form = bt.sample_notification(KIND.SubscriptionWentPastDue, "sub_ada_team", at(clock, hours=-1))
    assert client.post("/webhooks/braintree", data=form).status_code == 200
    run()
    [message] = messenger.messages
    data = message.data_variables()
    assert data["invoiceCount"] == 2
    assert sorted(line["amountDue"] for line in data["invoices"]) == ["$19.00", "$49.99"]
    assert len(rows(svc, DunningCase)) == 2


def test_a_recovery_delivered_before_its_failure_is_recorded_once_and_messages_nobody(
    svc, client, bt, past_due, run, messenger, clock
):
    late_failure = bt.sample_notification(KIND.SubscriptionChargedUnsuccessfully, "sub_ada", at(clock, hours=-2))
    bt.succeed_charge("sub_ada")  # Braintree's own retry
    recovered = bt.sample_notification(KIND.SubscriptionWentActive, "sub_ada", at(clock, minutes=-30))
    assert client.post("/webhooks/braintree", data=recovered).status_code == 200
    run()
    assert client.post("/webhooks/braintree", data=late_failure).status_code == 200
    run()
    assert messenger.messages == []
    [entry] = rows(svc, LedgerEntry)
    assert (entry.provider, entry.invoice_id, entry.amount, entry.attribution) == (
        "braintree",
        past_due["invoice_id"],
        4999,
        "provider_retry",
    )
    assert the_case(svc).status == CaseStatus.RECOVERED


def test_a_renewal_is_not_a_recovery(svc, client, bt, run, clock):
    bt.add_customer("cust_bob", card_declines=False)
    bt.add_subscription("cust_bob", subscription_id="sub_bob")
    form = bt.sample_notification(KIND.SubscriptionChargedSuccessfully, "sub_bob", at(clock))
    assert client.post("/webhooks/braintree", data=form).status_code == 200
    run()
    assert rows(svc, DunningCase) == [] and rows(svc, LedgerEntry) == []
    [event] = rows(svc, Event)
    assert event.status == EventStatus.DONE


def test_a_canceled_subscription_closes_its_case_and_cancels_the_reminders(svc, client, bt, past_due, run, clock):
    failure(bt, client, clock)
    run()
    bt.cancel("sub_ada")
    form = bt.sample_notification(KIND.SubscriptionCanceled, "sub_ada", at(clock))
    assert client.post("/webhooks/braintree", data=form).status_code == 200
    run()
    case = the_case(svc)
    assert (case.status, case.close_reason) == (CaseStatus.CANCELED, "subscription canceled")
    assert {n.status for n in rows(svc, Notification) if n.step != 0} == {NotificationStatus.CANCELED}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda form: {**form, "bt_payload": form["bt_payload"].replace("A", "B", 1)},
        lambda form: {**form, "bt_signature": f"{PUBLIC_KEY}|{'0' * 40}"},
        lambda form: {"bt_payload": form["bt_payload"]},
    ],
    ids=["tampered payload", "forged signature", "no signature"],
)
def test_bad_signatures_are_400_and_store_nothing(svc, client, bt, past_due, clock, tamper):
    form = bt.sample_notification(KIND.SubscriptionWentPastDue, "sub_ada", at(clock))
    response = client.post("/webhooks/braintree", data=tamper(form))
    assert response.status_code == 400
    assert "WWW-Authenticate" not in response.headers
    assert rows(svc, Event) == []


def test_a_body_that_is_not_a_form_is_400(svc, client):
    response = client.post("/webhooks/braintree", data=b'{"bt_signature": 1}', content_type="application/json")
    assert response.status_code == 400 and rows(svc, Event) == []


def test_without_keys_braintree_deliveries_are_503_naming_them(make_app):
    app = make_app()
    response = app.test_client().post("/webhooks/braintree", data={"bt_signature": "a|b", "bt_payload": "YQ=="})
    assert response.status_code == 503
    assert response.get_json()["missing"] == ["BRAINTREE_PUBLIC_KEY", "BRAINTREE_PRIVATE_KEY"]


def test_without_public_url_messages_are_held_saying_why(make_app, bt, past_due, messenger, clock):
    app = make_app(**braintree_config(bt), PUBLIC_URL="")
    with app.app_context():
        from webhook_app.services import services

        svc = services()
        failure(bt, app.test_client(), clock)
        Worker(svc).run_once()
        [first] = [n for n in rows(svc, Notification) if n.step == 0]
    assert first.status == NotificationStatus.HELD and "PUBLIC_URL" in first.last_error
    assert messenger.messages == []


# -- the link and the page ----------------------------------------------------------------------------


def follow_link(client, messenger) -> str:
    """Click the message's /r/ link like a browser; the path of the page it redirects to."""
    [message] = messenger.messages
    path = message.update_payment_url.replace("https://recover.example.test", "")
    click = client.get(path, headers=BROWSER)
    assert click.status_code == 303
    return click.headers["Location"]


def test_a_click_mints_our_update_page_with_a_client_token_for_the_customer(
    svc, client, bt, past_due, run, messenger, clock
):
    failure(bt, client, clock)
    run()
    location = follow_link(client, messenger)
    assert location.startswith("https://recover.example.test/pay/braintree/")
    [click] = rows(svc, Click)
    assert click.provider == "braintree"
    page = client.get(location.replace("https://recover.example.test", ""), headers=BROWSER)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Acme Cloud" in html and "$49.99" in html and 'name="form_key"' in html
    assert f'src="{bt.url}/dropin.min.js"' in html  # the stand-in's stub outside production
    assert bt.client_tokens[-1]["customer_id"] == "cust_ada"
    policy = page.headers["Content-Security-Policy"]
    assert f"script-src 'self' {bt.url};" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"


def open_page(client, svc, case_id: int) -> tuple[str, str]:
    """GET the update page for a case: (its path, the form key it rendered)."""
    from webhook_app import tokens

    path = tokens.page_url(svc.settings.links, "braintree", case_id).replace("https://recover.example.test", "")
    page = client.get(path, headers=BROWSER)
    assert page.status_code == 200, page.get_data(as_text=True)
    return path, form_key(page.get_data(as_text=True))


def form_key(html: str) -> str:
    match = re.search(r'name="form_key" value="([^"]+)"', html)
    assert match, "no form key in the page"
    return match.group(1)


@pytest.fixture
def opened(svc, client, bt, past_due, run, messenger, clock):
    """A failure messaged, the link clicked: the page path and its form key."""
    failure(bt, client, clock)
    run()
    location = follow_link(client, messenger)
    path = location.replace("https://recover.example.test", "")
    return path, form_key(client.get(path, headers=BROWSER).get_data(as_text=True))


def test_a_valid_card_is_saved_the_subscription_moved_and_the_balance_charged_once(
    svc, client, bt, past_due, opened, clock
):
    path, key = opened
    posted = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": key})
    assert posted.status_code == 303 and posted.headers["Location"].endswith(path)
    [charge] = bt.charges
    assert charge["ok"] and charge["amount"] == bt.subscriptions["sub_ada"]["transactions"][0]["amount"]
    assert bt.subscriptions["sub_ada"]["payment_method_token"] == charge["token"]
    assert bt.payment_methods[charge["token"]]["default"] is True
    result = client.get(path).get_data(as_text=True)
    assert "your payment went through" in result and "$49.99" in result and "Visa ending 1111" in result
    # The payment is recorded from Braintree's own answer, before any webhook: the link gets the credit.
    case = the_case(svc)
    assert case.status == CaseStatus.RECOVERED
    [entry] = rows(svc, LedgerEntry)
    assert (entry.provider, entry.amount, entry.attribution) == ("braintree", 4999, "link_click")
    # A reload re-posting the same form, and the webhook Braintree sends, change nothing.
    again = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": key})
    assert again.status_code == 303
    form = bt.sample_notification(KIND.SubscriptionWentActive, "sub_ada", at(clock, minutes=1))
    assert client.post("/webhooks/braintree", data=form).status_code == 200
    Worker(svc).run_once()
    assert len(bt.charges) == 1 and len(rows(svc, LedgerEntry)) == 1


def test_a_declined_card_shows_a_plain_message_charges_nothing_and_another_card_works(
    svc, client, bt, past_due, opened
):
    path, key = opened
    declined = client.post(path, data={"payment_method_nonce": "fake-processor-declined-visa-nonce", "form_key": key})
    assert declined.status_code == 200
    html = declined.get_data(as_text=True)
    assert 'role="alert"' in html and "Your bank declined this card" in html and "Do Not Honor" not in html
    assert bt.charges == [] and the_case(svc).status == CaseStatus.OPEN
    next_key = form_key(html)
    assert next_key != key
    paid = client.post(path, data={"payment_method_nonce": "fake-valid-mastercard-nonce", "form_key": next_key})
    assert paid.status_code == 303
    assert [c["ok"] for c in bt.charges] == [True]
    assert "MasterCard ending 4444" in client.get(path).get_data(as_text=True)


def test_a_charge_declined_after_the_card_verified_says_so_and_lets_the_customer_try_again(svc, client, bt, run, clock):
    bt.add_customer("cust_ada")
    bt.add_subscription("cust_ada", subscription_id="sub_ada", price="2001.00")  # the sandbox declines 2001
    bt.fail_charge("sub_ada")
    failure(bt, client, clock)
    run()
    path, key = open_page(client, svc, the_case(svc).id)
    response = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": key})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "insufficient funds" in html and 'name="form_key"' in html
    [charge] = bt.charges
    assert charge["ok"] is False
    assert bt.subscriptions["sub_ada"]["payment_method_token"] == charge["token"]  # the new card, kept
    assert the_case(svc).status == CaseStatus.OPEN and rows(svc, LedgerEntry) == []


def test_a_double_submit_and_a_second_tab_at_once_charge_once(app, svc, bt, past_due, opened):
    path, key = opened
    other_tab = form_key(app.test_client().get(path, headers=BROWSER).get_data(as_text=True))
    forms = [key, key, other_tab, other_tab]
    answers: list[int] = []
    barrier = threading.Barrier(len(forms))

    def submit(value: str) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": value})
        answers.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(value,)) for value in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(bt.charges) == 1 and bt.charges[0]["ok"]
    assert set(answers) <= {303, 202, 200} and 303 in answers
    assert len(rows(svc, LedgerEntry)) == 1


def test_a_lost_charge_answer_is_read_back_from_braintree_never_charged_again(make_app, bt, past_due, messenger, clock):
    app = make_app(**braintree_config(bt), HTTP_TIMEOUT_SECONDS="1")
    client = app.test_client()
    with app.app_context():
        from webhook_app.services import services

        svc = services()
        failure(bt, client, clock)
        Worker(svc).run_once()
        path = follow_link(client, messenger).replace("https://recover.example.test", "")
    key = form_key(client.get(path, headers=BROWSER).get_data(as_text=True))
    original = bt.app.view_functions["create_transaction"]

    def slow_charge(merchant_id: str):
        response = original(merchant_id)  # charged...
        time.sleep(1.5)  # ...but the answer comes after the client gave up
        return response

    bt.app.view_functions["create_transaction"] = slow_charge
    response = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": key})
    bt.app.view_functions["create_transaction"] = original
    assert len(bt.charges) == 1 and bt.charges[0]["ok"]
    # Either reconciled at once, or shown as pending and reconciled on the next visit: never charged twice.
    assert response.status_code in (202, 303)
    assert "your payment went through" in client.get(path).get_data(as_text=True)
    with app.app_context():
        assert len(bt.charges) == 1 and the_case(services()).status == CaseStatus.RECOVERED


def test_stale_forms_tampered_tokens_and_too_many_submissions_are_refused(svc, client, bt, past_due, opened, clock):
    path, key = opened
    stale = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": key + "x"})
    assert stale.status_code == 400 and "expired" in stale.get_data(as_text=True)
    assert client.get(path[:-3] + "abc").status_code == 404
    for _ in range(6):
        html = client.get(path).get_data(as_text=True)
        client.post(
            path, data={"payment_method_nonce": "fake-processor-declined-visa-nonce", "form_key": form_key(html)}
        )
    html = client.get(path).get_data(as_text=True)
    limited = client.post(path, data={"payment_method_nonce": "fake-valid-nonce", "form_key": form_key(html)})
    assert limited.status_code == 429 and bt.charges == []


def test_the_page_of_a_paid_case_says_so_without_a_form(svc, client, bt, past_due, opened, clock):
    path, _ = opened
    bt.succeed_charge("sub_ada")
    page = client.get(path)
    assert page.status_code == 200 and "up to date" in page.get_data(as_text=True)
    assert the_case(svc).status == CaseStatus.RECOVERED  # settled from Braintree, the webhook may come later


# -- the campaign, doctor, finance ----------------------------------------------------------------------


def test_campaign_for_braintree_messages_each_past_due_customer_once(svc, bt, messenger):
    for n in range(3):
        bt.add_customer(f"cust_{n}", email=f"c{n}@example.com")
        bt.add_subscription(f"cust_{n}", subscription_id=f"sub_{n}")
        bt.fail_charge(f"sub_{n}")
    bt.add_customer("cust_ok", card_declines=False)
    bt.add_subscription("cust_ok", subscription_id="sub_ok")
    options = CampaignOptions(provider="braintree", concurrency=2, progress_interval=3600)
    report = run_campaign(svc, options, echo=lambda line: None, tty=False)
    assert report.sent == 3
    assert sorted(m.email for m in messenger.messages) == ["c0@example.com", "c1@example.com", "c2@example.com"]
    assert {c.provider for c in rows(svc, DunningCase)} == {"braintree"}
    again = run_campaign(svc, options, echo=lambda line: None, tty=False)
    assert again.sent == 0 and len(messenger.messages) == 3


def test_doctor_checks_the_keys_and_warns_about_braintrees_own_emails(svc):
    lines = {c.name: c for c in run_checks(svc)}
    assert lines["braintree keys"].status == "ok" and MERCHANT_ID in lines["braintree keys"].detail
    assert lines["braintree update page"].status == "ok"
    assert lines["braintree emails"].status == "warn" and "Email Notifications" in lines["braintree emails"].fix
    assert "https://recover.example.test/webhooks/braintree" in lines["braintree webhook"].detail


def test_doctor_names_rejected_keys_without_showing_them(make_app, bt):
    app = make_app(**{**braintree_config(bt), "BRAINTREE_PRIVATE_KEY": "wrong_private_key_123456"})
    with app.app_context():
        from webhook_app.services import services

        line = {c.name: c for c in run_checks(services())}["braintree keys"]
    assert line.status == "fail" and "BRAINTREE_PRIVATE_KEY" in line.detail
    assert "wrong_private_key_123456" not in line.detail


def test_finance_filters_braintree_recoveries_and_links_to_the_control_panel(make_app, bt, past_due, clock):
    config = {**braintree_config(bt), "FINANCE_USERNAME": "fin", "FINANCE_PASSWORD": "secret-pass"}
    app = make_app(**config)
    client = app.test_client()
    with app.app_context():
        from webhook_app.services import services

        svc = services()
        failure(bt, client, clock, hours=-5)
        Worker(svc).run_once()
        bt.succeed_charge("sub_ada")
        form = bt.sample_notification(KIND.SubscriptionChargedSuccessfully, "sub_ada", at(clock))
        client.post("/webhooks/braintree", data=form)
        Worker(svc).run_once()
    auth = {"Authorization": "Basic ZmluOnNlY3JldC1wYXNz"}
    period = f"since={(clock.now() - timedelta(days=2)).date()}&until={(clock.now() + timedelta(days=2)).date()}"
    data = client.get(f"/finance/recoveries.json?provider=braintree&{period}", headers=auth).get_json()
    [row] = data["data"]
    assert row["provider"] == "braintree" and row["invoice_id"] == past_due["invoice_id"]
    assert row["invoice_url"] == f"https://sandbox.braintreegateway.com/merchants/{MERCHANT_ID}/subscriptions/sub_ada"
    stripe_only = client.get(f"/finance/recoveries.json?provider=stripe&{period}", headers=auth).get_json()
    assert stripe_only["data"] == []


def test_production_pages_load_drop_in_from_braintree_only(bt, sqlite_url):
    from webhook_app.config import load_settings
    from webhook_app.providers.braintree.pages import DROPIN_CDN, content_security_policy, dropin_script

    config = {
        **base_config(sqlite_url),
        **braintree_config(bt),
        "APP_ENV": "production",
        "BRAINTREE_ENVIRONMENT": "production",
    }
    settings = load_settings(config)
    assert dropin_script(settings) == DROPIN_CDN
    policy = content_security_policy(settings)
    assert bt.url not in policy and "127.0.0.1" not in policy
    assert "script-src 'self' https://js.braintreegateway.com https://assets.braintreegateway.com;" in policy
    assert "connect-src https://api.braintreegateway.com" in policy

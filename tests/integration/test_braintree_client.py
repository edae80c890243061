"""BraintreeClient against the served XML stand-in: the SDK speaks XML, so it is tested over a real socket."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from tests.fakes import FakeTime
from tests.standins import Faults, free_port, serve
from tests.standins.braintree import MERCHANT_ID, PRIVATE_KEY, PUBLIC_KEY, BraintreeStandIn
from webhook_app.adapters.ratelimit import TokenBucket
from webhook_app.errors import ConfigurationNeeded, PermanentError, ResourceMissing, TransientError
from webhook_app.providers.braintree.client import BraintreeClient

EMAIL = "ada@example.com"


@pytest.fixture
def standin():
    standin = BraintreeStandIn()
    served = serve(standin.app)
    standin.url = served.url
    try:
        yield standin
    finally:
        served.stop()


def make_client(standin: BraintreeStandIn, **overrides) -> BraintreeClient:
    options = dict(
        merchant_id=MERCHANT_ID,
        public_key=PUBLIC_KEY,
        private_key=PRIVATE_KEY,
        environment="sandbox",
        api_base=standin.url,
        timeout=5.0,
        rate_per_second=1000.0,
    )
    options.update(overrides)
    return BraintreeClient(**options)


@pytest.fixture
def past_due(standin):
    """A customer whose card failed: subscription Past Due with a 49.99 USD balance."""
    customer = standin.add_customer("cust_ada", email=EMAIL)
    sub = standin.add_subscription(customer["id"], subscription_id="sub_ada", price="49.99")
    standin.fail_charge(sub["id"])
    return sub


def assert_clean(error: Exception) -> None:
    assert PRIVATE_KEY not in str(error)
    assert EMAIL not in str(error)


# -- the update page: nonce -> payment method -> subscription -> one retry --------------------------


def test_valid_nonce_becomes_the_default_card_the_subscription_moves_and_the_balance_is_charged_once(standin, past_due):
    client = make_client(standin)
    token = client.client_token("cust_ada")
    assert token and isinstance(token, str)

    added = client.add_payment_method("cust_ada", "fake-valid-nonce")
    assert added["ok"] is True
    assert standin.payment_methods[added["token"]]["default"] is True
    sent = standin.requests[-1]["body"]
    assert "<make_default" in sent and "<verify_card" in sent  # verified before it is vaulted

    moved = client.move_subscription_to("sub_ada", added["token"])
    assert moved["payment_method_token"] == added["token"]

    charged = client.retry_charge("sub_ada")
    assert charged["ok"] is True
    assert charged["status"] == "submitted_for_settlement"
    assert (charged["amount"], charged["currency"]) == ("49.99", "USD")
    assert [c["transaction_id"] for c in standin.charges] == [charged["transaction_id"]]  # exactly once

    after = client.find_subscription("sub_ada")
    assert (after["status"], after["balance"], after["balance_minor"], after["failure_count"]) == (
        "Active",
        "0.00",
        0,
        0,
    )
    assert after["transactions"][0]["id"] == charged["transaction_id"]


def test_declined_nonce_gives_a_plain_message_and_nothing_is_charged_or_moved(standin, past_due):
    client = make_client(standin)
    result = client.add_payment_method("cust_ada", "fake-processor-declined-visa-nonce")
    assert result["ok"] is False
    assert result["message"] == "Your bank declined this card. Please use another card or contact your bank."
    assert "Do Not Honor" not in result["message"]  # the processor's words are for us, not the customer
    assert (result["processor_response_code"], result["processor_response_text"]) == ("2000", "Do Not Honor")
    assert standin.charges == []
    assert client.find_subscription("sub_ada")["payment_method_token"] == past_due["payment_method_token"]
    vaulted = [t for t, pm in standin.payment_methods.items() if pm["customer_id"] == "cust_ada"]
    assert vaulted == [past_due["payment_method_token"]]  # the declined card was not vaulted


def test_an_unknown_or_used_nonce_asks_the_customer_to_enter_the_card_again(standin, past_due):
    result = make_client(standin).add_payment_method("cust_ada", "nonce-from-yesterday")
    assert result["ok"] is False
    assert "enter them again" in result["message"]


def test_a_declined_retry_is_a_result_not_an_exception_and_is_recorded_once(standin, past_due):
    client = make_client(standin)  # the subscription still bills the card that failed
    result = client.retry_charge("sub_ada")
    assert result["ok"] is False
    assert result["status"] == "processor_declined"
    assert result["message"].startswith("Your bank declined this card for insufficient funds")
    assert len(standin.charges) == 1
    assert client.find_subscription("sub_ada")["status"] == "Past Due"


def test_retry_refuses_a_subscription_that_is_not_past_due_without_charging(standin):
    standin.add_customer("cust_bob", email="bob@example.com")
    standin.add_subscription("cust_bob", subscription_id="sub_bob")
    with pytest.raises(PermanentError, match="not Past Due"):
        make_client(standin).retry_charge("sub_bob")
    assert standin.charges == []


def test_moving_to_a_token_of_another_customer_is_refused(standin, past_due):
    other = standin.add_customer("cust_eve", email="eve@example.com")
    with pytest.raises(ResourceMissing) as info:
        make_client(standin).move_subscription_to("sub_ada", standin.default_token(other["id"]))
    assert info.value.kind == "payment_method"


# -- reads ----------------------------------------------------------------------------------------


def test_find_customer_and_subscription_return_plain_dicts(standin, past_due):
    client = make_client(standin)
    customer = client.find_customer("cust_ada")
    assert customer == {
        "id": "cust_ada",
        "email": EMAIL,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "addresses": [{"country_code_alpha2": "GB", "country_name": "United Kingdom"}],
        "default_payment_method_token": past_due["payment_method_token"],
    }
    sub = client.find_subscription("sub_ada")
    assert sub["status"] == "Past Due"
    assert (sub["balance"], sub["balance_minor"], sub["currency"], sub["customer_id"]) == (
        "49.99",
        4999,
        "USD",
        "cust_ada",
    )
    assert sub["failure_count"] == 1
    assert sub["next_billing_date"] == past_due["next_billing_date"].isoformat()
    failed = sub["transactions"][0]
    assert failed["status"] == "processor_declined"
    assert (failed["amount"], failed["amount_minor"], failed["currency_iso_code"]) == ("49.99", 4999, "USD")
    assert (failed["processor_response_code"], failed["processor_response_text"]) == ("2001", "Insufficient Funds")
    assert failed["customer_details"] == {"id": "cust_ada", "email": EMAIL}
    assert all(isinstance(v, (str, int, list, dict, type(None))) for v in sub.values())  # no SDK objects


def test_zero_decimal_currency_amounts_are_exact(standin):
    standin.add_customer("cust_jp")
    standin.add_subscription("cust_jp", subscription_id="sub_jp", price="500", currency="JPY")
    standin.fail_charge("sub_jp")
    sub = make_client(standin).find_subscription("sub_jp")
    assert (sub["balance_minor"], sub["transactions"][0]["amount_minor"]) == (500, 500)


def test_list_past_due_subscriptions_searches_by_status(standin, past_due):
    standin.add_customer("cust_bob")
    standin.add_subscription("cust_bob", subscription_id="sub_bob")
    for n in range(3):
        standin.add_customer(f"cust_{n}")
        standin.add_subscription(f"cust_{n}", subscription_id=f"sub_late_{n}")
        standin.fail_charge(f"sub_late_{n}")
    found = sorted(s["id"] for s in make_client(standin).list_past_due_subscriptions())
    assert found == ["sub_ada", "sub_late_0", "sub_late_1", "sub_late_2"]


def test_check_credentials(standin):
    assert "sandbox keys accepted" in make_client(standin).check_credentials()


def test_parse_webhook_uses_the_clients_keys(standin, past_due):
    form = standin.sample_notification("subscription_went_past_due", "sub_ada")
    parsed = make_client(standin).parse_webhook(form["bt_signature"], form["bt_payload"])
    assert parsed["subscription"]["balance_minor"] == 4999
    assert parsed["event_id"].startswith("subscription_went_past_due:")


# -- classification -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda c: c.find_subscription("sub_missing"), "subscription"),
        (lambda c: c.find_customer("cust_missing"), "customer"),
        (lambda c: c.client_token("cust_missing"), "customer"),
        (lambda c: c.add_payment_method("cust_missing", "fake-valid-nonce"), "customer"),
        (lambda c: c.retry_charge("sub_missing"), "subscription"),
        (lambda c: c.move_subscription_to("sub_missing", "tok"), "subscription"),
    ],
)
def test_missing_objects_are_resource_missing_naming_the_kind(standin, call, kind):
    with pytest.raises(ResourceMissing) as info:
        call(make_client(standin))
    assert info.value.kind == kind
    assert standin.charges == []


def test_wrong_keys_need_configuration_and_the_message_never_carries_them(standin, past_due, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(standin, private_key="wrong_private_key_123456")
    with pytest.raises(ConfigurationNeeded, match="BRAINTREE_PRIVATE_KEY") as info:
        client.find_customer("cust_ada")
    assert "wrong_private_key_123456" not in str(info.value)
    assert "wrong_private_key_123456" not in caplog.text
    with pytest.raises(ConfigurationNeeded):
        make_client(standin, merchant_id="someone_else").find_customer("cust_ada")


def test_429_is_transient_with_retry_after_and_pauses_the_bucket(standin, past_due):
    standin.faults = Faults(throttle_rate=1.0)
    standin.retry_after = "4"
    fake = FakeTime()
    bucket = TokenBucket(5, clock=fake.clock, sleep=fake.sleep)
    client = make_client(standin, bucket=bucket)
    with pytest.raises(TransientError) as info:
        client.find_subscription("sub_ada")
    assert info.value.retry_after == 4
    standin.faults = Faults()
    before = fake.now
    client.find_subscription("sub_ada")
    assert fake.now - before == pytest.approx(4)


def test_429_without_retry_after_uses_the_default_wait(standin, past_due):
    standin.faults = Faults(throttle_rate=1.0)
    with pytest.raises(TransientError) as info:
        make_client(standin).find_subscription("sub_ada")
    assert info.value.retry_after == 10


def test_server_errors_are_transient(standin, past_due):
    standin.faults = Faults(error_rate=1.0)
    with pytest.raises(TransientError, match="500"):
        make_client(standin).find_customer("cust_ada")


def test_timeouts_are_transient(standin, past_due):
    standin.faults = Faults(timeout_rate=1.0, hang_seconds=1.0)
    with pytest.raises(TransientError, match="did not answer"):
        make_client(standin, timeout=0.2).find_customer("cust_ada")


def test_connection_refused_is_transient():
    client = BraintreeClient(
        merchant_id=MERCHANT_ID,
        public_key=PUBLIC_KEY,
        private_key=PRIVATE_KEY,
        api_base=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(TransientError, match="could not reach"):
        client.find_subscription("sub_ada")


def test_a_timed_out_retry_charge_is_transient_and_the_charge_is_still_visible(standin, past_due):
    client = make_client(standin)
    client.move_subscription_to("sub_ada", client.add_payment_method("cust_ada", "fake-valid-nonce")["token"])
    standin.faults = Faults(timeout_rate=1.0, hang_seconds=0.5)
    with pytest.raises(TransientError):
        make_client(standin, timeout=0.2).retry_charge("sub_ada")
    standin.faults = Faults()
    # The lookup before the charge timed out, so nothing was charged: the caller may retry.
    assert standin.charges == []
    assert client.retry_charge("sub_ada")["ok"] is True
    assert len(standin.charges) == 1


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"merchant_id": ""}, "BRAINTREE_MERCHANT_ID"),
        ({"private_key": ""}, "BRAINTREE_PRIVATE_KEY"),
        ({"environment": "live"}, "BRAINTREE_ENVIRONMENT"),
        ({"api_base": "https://127.0.0.1:8443"}, "BRAINTREE_API_BASE"),
        ({"api_base": "ftp://127.0.0.1"}, "BRAINTREE_API_BASE"),
    ],
)
def test_bad_configuration_names_the_variable(kwargs, variable):
    options = dict(merchant_id=MERCHANT_ID, public_key=PUBLIC_KEY, private_key=PRIVATE_KEY, environment="sandbox")
    options.update(kwargs)
    with pytest.raises(ConfigurationNeeded, match=variable) as info:
        BraintreeClient(**options)
    assert_clean(info.value)


def test_sandbox_and_production_point_at_braintrees_hosts():
    for environment, host in (
        ("sandbox", "api.sandbox.braintreegateway.com"),
        ("production", "api.braintreegateway.com"),
    ):
        client = BraintreeClient(
            merchant_id=MERCHANT_ID, public_key=PUBLIC_KEY, private_key=PRIVATE_KEY, environment=environment
        )
        assert client.gateway.config.base_url() == f"https://{host}:443"


def test_charges_are_decimal_amounts_of_the_balance(standin, past_due):
    client = make_client(standin)
    client.move_subscription_to(
        "sub_ada", client.add_payment_method("cust_ada", "fake-valid-mastercard-nonce")["token"]
    )
    client.retry_charge("sub_ada")
    assert standin.charges[0]["amount"] == Decimal("49.99")

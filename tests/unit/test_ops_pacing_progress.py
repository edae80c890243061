"""The campaign's pacing (token bucket + 429 backoff) and progress output, with time driven by hand."""

from __future__ import annotations

import io

import pytest

from tests.fakes import FakeTime
from tests.fixtures import stripe_objects as so
from webhook_app.adapters.pacing import Pacer
from webhook_app.adapters.ratelimit import SHARED_PACE, TokenBucket
from webhook_app.errors import PermanentError, RateLimited, TransientError
from webhook_app.ops.campaign import eligible_reason, mask_email
from webhook_app.ops.progress import Progress
from webhook_app.providers.stripe.translate import invoice_view


def flaky(failures: list[Exception], value="ok"):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return value

    return fn, calls


def test_throughput_is_bounded_by_the_bucket_not_by_waiting_per_call():
    t = FakeTime()
    # 16 a second (a power of two keeps the fake clock's float arithmetic exact).
    pacer = Pacer("stripe", TokenBucket(16, clock=t.clock, sleep=t.sleep), sleep=t.sleep)

    for _ in range(48):
        pacer(lambda: None)

    # 16 at once (one second's burst), then 16 a second: 48 calls take 2 seconds, not 48 waits.
    assert t.now == pytest.approx(2.0)
    assert pacer.calls == 48


def test_a_429_pauses_every_caller_of_the_bucket_and_the_call_is_retried():
    t = FakeTime()
    bucket = TokenBucket(128, clock=t.clock, sleep=t.sleep)
    adapter_bucket = TokenBucket(128, clock=t.clock, sleep=t.sleep)
    pacer = Pacer("loops", bucket, also_pause=(adapter_bucket,), backoff_max=30, sleep=t.sleep)
    fn, calls = flaky([TransientError("Loops rate limit (429)", retry_after=1.5)])

    assert pacer(fn) == "ok"

    assert len(calls) == 2 and pacer.throttled == 1 and pacer.retried == 1
    assert 1.2 <= t.now <= 1.5  # waited the provider's Retry-After (with jitter below it)
    before = t.now
    adapter_bucket.acquire()  # the adapter's own bucket was held too, and is free again now
    assert t.now == before


class OpenSlots:
    """A shared slot store with every slot free now, recording the pauses asked of it."""

    def __init__(self):
        self.paused: list[float] = []

    def take(self, interval: float) -> float:
        return 0.0

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)

    def push(self, seconds: float) -> None:
        pass


def test_a_429_without_retry_after_under_shared_pacing_holds_briefly_a_stated_one_is_honoured():
    t = FakeTime()
    bucket = TokenBucket(25, clock=t.clock, sleep=t.sleep)
    slots = OpenSlots()
    bucket.share(slots)
    pacer = Pacer("stripe", bucket, sleep=t.sleep)
    slot = 1 / (25 * SHARED_PACE)

    # Stripe's usual 429, no Retry-After (the adapter's default would be a second): a couple of slots.
    fn, calls = flaky([RateLimited("Stripe rate limit (429)", 1.0, stated=False)])
    assert pacer(fn) == "ok" and len(calls) == 2
    assert 0.8 * 2 * slot <= slots.paused[-1] <= 2 * slot
    assert t.now < 0.1

    # A Retry-After the provider gave is waited out in full (less the jitter), shared pacing or not.
    fn, calls = flaky([RateLimited("Stripe rate limit (429)", 1.5, stated=True)])
    assert pacer(fn) == "ok" and len(calls) == 2
    assert 1.2 <= slots.paused[-1] <= 1.5
    assert pacer.throttled == 2


def test_retry_after_is_capped_and_5xx_back_off_exponentially_then_give_up():
    t = FakeTime()
    pacer = Pacer(
        "stripe",
        TokenBucket(1024, clock=t.clock, sleep=t.sleep),
        max_retries=3,
        backoff_base=0.5,
        backoff_max=0.75,
        sleep=t.sleep,
    )
    fn, calls = flaky([TransientError("Stripe unavailable (503)")] * 4)

    with pytest.raises(TransientError):
        pacer(fn)

    assert len(calls) == 4  # the first try and 3 retries
    # 0.5, 1.0 -> capped 0.75, 2.0 -> capped 0.75; each with up to 20% jitter off
    assert len(t.sleeps) == 3
    assert all(0.8 * cap <= s <= cap for s, cap in zip(t.sleeps, (0.5, 0.75, 0.75), strict=False))


def test_permanent_errors_are_not_retried():
    pacer = Pacer("stripe", TokenBucket(1000))
    fn, calls = flaky([PermanentError("resource_missing")])
    with pytest.raises(PermanentError):
        pacer(fn)
    assert len(calls) == 1


def test_progress_prints_plain_lines_with_rate_and_eta_when_not_a_terminal():
    t = FakeTime()
    out = io.StringIO()
    with Progress("campaign", 100, out, tty=False, interval=10, clock=t.clock, postfix=lambda: "sent=40") as p:
        for _ in range(40):
            t.now += 0.5
            p.advance()  # 40 in 20 s: a line at 10 s and at 20 s, nothing between
        assert out.getvalue().count("\n") == 2
    lines = out.getvalue().splitlines()
    assert lines[1] == "campaign: 40/100 customers 2.0/s eta 30s sent=40"
    assert lines[-1].startswith("campaign: 40/100 customers")  # the closing line
    assert "\r" not in out.getvalue()


def test_progress_draws_a_tqdm_bar_on_a_terminal():
    out = io.StringIO()
    with Progress("campaign", 5, out, tty=True) as p:
        for _ in range(5):
            p.advance()
    text = out.getvalue()
    assert "\r" in text and "5/5" in text and "customer/s" in text


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({}, None),
        ({"attempt_count": 0}, "not attempted yet"),
        ({"collection_method": "send_invoice"}, "sent for manual payment"),
        ({"amount_due": 0}, "nothing left to pay"),
        ({"status": "paid"}, "not open"),
    ],
)
def test_which_open_invoices_the_campaign_chases(changes, reason):
    invoice = invoice_view(so.invoice(**{"attempt_count": 2, **changes}))
    assert eligible_reason(invoice) == reason


def test_emails_are_masked_in_operator_output():
    assert mask_email("ada@example.com") == "a***@example.com"
    assert mask_email(None) == "(no email)"

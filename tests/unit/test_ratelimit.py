"""TokenBucket and Retry-After parsing, driven by a fake clock: nothing here really sleeps."""

from __future__ import annotations

import threading

import pytest

from tests.fakes import FakeTime
from webhook_app.adapters.ratelimit import LATE_TOLERANCE, SHARED_PACE, TokenBucket, parse_retry_after


def bucket(fake: FakeTime, rate: float, burst: float | None = None) -> TokenBucket:
    return TokenBucket(rate, burst=burst, clock=fake.clock, sleep=fake.sleep)


def test_a_full_bucket_serves_its_burst_without_waiting():
    fake = FakeTime()
    b = bucket(fake, rate=10, burst=5)

    waits = [b.acquire() for _ in range(5)]

    assert waits == [0.0] * 5
    assert fake.sleeps == []


def test_steady_rate_spaces_requests_one_over_rate_apart():
    fake = FakeTime()
    b = bucket(fake, rate=10, burst=1)
    start = fake.now

    for _ in range(5):
        b.acquire()

    # The first token is in the bucket; the next four each wait a tenth of a second.
    assert fake.sleeps == pytest.approx([0.1] * 4)
    assert fake.now - start == pytest.approx(0.4)


def test_default_burst_is_one_seconds_worth_of_tokens():
    fake = FakeTime()
    b = bucket(fake, rate=10)

    for _ in range(10):
        b.acquire()
    assert fake.sleeps == []
    b.acquire()
    assert fake.sleeps == pytest.approx([0.1])


def test_idle_time_refills_but_never_beyond_the_burst():
    fake = FakeTime()
    b = bucket(fake, rate=2, burst=2)
    b.acquire()
    b.acquire()

    fake.now += 60  # a long idle minute would be 120 tokens without the cap
    for _ in range(2):
        assert b.acquire() == 0.0
    assert b.acquire() == pytest.approx(0.5)


def test_pause_for_holds_the_next_caller_until_the_retry_after_has_passed():
    fake = FakeTime()
    b = bucket(fake, rate=10, burst=10)
    paused_at = fake.now

    b.pause_for(5)
    b.acquire()

    assert fake.now - paused_at >= 5
    assert sum(fake.sleeps) == pytest.approx(5)


def test_after_a_pause_callers_resume_at_the_steady_rate_not_with_a_burst():
    fake = FakeTime()
    b = bucket(fake, rate=10, burst=10)

    b.pause_for(5)
    b.acquire()  # waits out the pause
    resumed = fake.now
    b.acquire()

    assert fake.now - resumed == pytest.approx(0.1)


def test_a_shorter_pause_does_not_cut_a_longer_one_short():
    fake = FakeTime()
    b = bucket(fake, rate=10)
    start = fake.now

    b.pause_for(30)
    b.pause_for(2)
    b.acquire()

    assert fake.now - start == pytest.approx(30)


def test_concurrent_callers_never_share_a_token():
    fake = FakeTime()
    b = bucket(fake, rate=1, burst=20)  # the fake clock stands still: exactly 20 tokens exist
    barrier = threading.Barrier(20)

    def take():
        barrier.wait()
        b.acquire()

    threads = [threading.Thread(target=take) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)

    assert fake.sleeps == []  # all twenty were served from the burst
    b.acquire()  # the twenty-first must wait for a refill
    assert fake.sleeps == pytest.approx([1.0])


@pytest.mark.parametrize("rate, burst", [(0, None), (-1, None), (5, 0.5)])
def test_a_bucket_that_could_never_serve_a_request_is_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst=burst)


@pytest.mark.parametrize(
    "header, expected",
    [
        ("7", 7.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("999999", 3600.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates_and_clamps_them(header, expected):
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT

    assert parse_retry_after(header, now=now) == (pytest.approx(expected) if expected is not None else None)


def test_refill_rounding_never_leaves_a_caller_waiting_forever():
    fake = FakeTime(start=1_000_000.0)
    limiter = TokenBucket(20, clock=fake.clock, sleep=fake.sleep)
    for _ in range(200):
        limiter.acquire()
    assert abs((fake.now - 1_000_000.0) - 9.0) < 1e-6  # 200 requests at 20/s after a burst of 20


class SlotsInMemory:
    """A `SlotStore` answering pre-set waits (the database one is tested in test_shared_rate_limit)."""

    def __init__(self, waits: list[float | None]):
        self.waits = list(waits)
        self.taken: list[float] = []
        self.paused: list[float] = []
        self.pushed: list[float] = []

    def take(self, interval: float) -> float | None:
        self.taken.append(interval)
        return self.waits.pop(0) if self.waits else 0.0

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)

    def push(self, seconds: float) -> None:
        self.pushed.append(seconds)


def test_a_shared_bucket_waits_for_its_reserved_slot_a_little_under_the_limit():
    fake = FakeTime()
    b = bucket(fake, rate=10)
    store = SlotsInMemory([0.0, 0.25])
    b.share(store)

    assert b.acquire() == 0.0
    assert b.acquire() == pytest.approx(0.25)
    assert store.taken == pytest.approx([1 / (10 * SHARED_PACE)] * 2)


def test_a_shared_bucket_passes_retry_after_to_every_process_and_waits_it_out():
    fake = FakeTime()
    b = bucket(fake, rate=10)
    store = SlotsInMemory([])
    b.share(store)

    b.pause_for(2.0)
    b.acquire()

    assert store.paused == [2.0]
    assert fake.sleeps[0] == pytest.approx(2.0)


def test_a_shared_bucket_paces_alone_while_the_shared_state_is_unavailable():
    fake = FakeTime()
    b = bucket(fake, rate=10, burst=1)
    b.share(SlotsInMemory([None, None, None]))

    for _ in range(3):
        b.acquire()

    assert fake.sleeps == pytest.approx([0.1, 0.1])


class LateTime(FakeTime):
    """A clock whose sleeps overshoot by a set amount: a thread woken late (a busy machine)."""

    def __init__(self, overshoot: list[float]):
        super().__init__()
        self.overshoot = list(overshoot)

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + (self.overshoot.pop(0) if self.overshoot else 0.0))


def test_a_shared_taker_woken_too_late_moves_the_next_slots_on_by_the_excess():
    late = LateTime([0.001, 0.100])  # first on time (a millisecond is jitter), then 100 ms late
    b = TokenBucket(25, clock=late.clock, sleep=late.sleep)
    store = SlotsInMemory([0.04, 0.04])
    b.share(store)

    b.acquire()
    b.acquire()

    # Only the late start moved the slots not yet taken, by what it was late beyond the tolerance: the
    # request 25 slots later stays a full window behind it, and an on-time pace loses nothing.
    assert store.pushed == [pytest.approx(0.100 - LATE_TOLERANCE)]
    assert b.late_starts == 1


def test_a_429_without_retry_after_holds_an_evenly_paced_bucket_for_a_couple_of_slots():
    fake = FakeTime()
    shared = bucket(fake, rate=25)
    shared.share(SlotsInMemory([]))
    slot = 1 / (25 * SHARED_PACE)

    # One request too many in one window: room comes back about a slot later, not after a second.
    assert shared.throttle_hold(1.0) == pytest.approx(2 * slot)
    # The same request refused again: the hold doubles, up to the adapter's default.
    assert shared.throttle_hold(1.0, attempt=2) == pytest.approx(4 * slot)
    assert shared.throttle_hold(1.0, attempt=6) == 1.0
    # A local token bucket bursts: its 429 may mean a full window, so it holds the whole default.
    assert bucket(fake, rate=25).throttle_hold(1.0) == 1.0

"""Quiet hours in the customer's zone, guessed from their country; UTC when unknown."""

from __future__ import annotations

from datetime import datetime

from webhook_app.quiet_hours import quiet_until


def test_daytime_is_not_quiet():
    assert quiet_until(datetime(2026, 6, 1, 12, 0), "GB", (21, 8)) is None  # 13:00 in London


def test_late_evening_in_new_york_waits_for_8am_local():
    # 03:00 UTC on 1 June = 23:00 EDT; 08:00 EDT = 12:00 UTC
    assert quiet_until(datetime(2026, 6, 1, 3, 0), "US", (21, 8)) == datetime(2026, 6, 1, 12, 0)


def test_early_morning_waits_until_the_same_morning():
    # 22:00 UTC = 07:00 in Tokyo the next day; 08:00 JST = 23:00 UTC
    assert quiet_until(datetime(2026, 6, 1, 22, 0), "JP", (21, 8)) == datetime(2026, 6, 1, 23, 0)


def test_unknown_country_uses_utc_hours():
    assert quiet_until(datetime(2026, 6, 1, 23, 30), None, (21, 8)) == datetime(2026, 6, 2, 8, 0)
    assert quiet_until(datetime(2026, 6, 1, 23, 30), "ZZ", (21, 8)) == datetime(2026, 6, 2, 8, 0)


def test_a_dst_change_overnight_is_respected():
    # Europe/Berlin springs forward on 29 March 2026: 22:00 CET is 21:00 UTC, 08:00 CEST is 06:00 UTC.
    assert quiet_until(datetime(2026, 3, 28, 21, 0), "DE", (21, 8)) == datetime(2026, 3, 29, 6, 0)


def test_a_daytime_window_that_does_not_wrap_midnight():
    assert quiet_until(datetime(2026, 6, 1, 13, 0), None, (12, 14)) == datetime(2026, 6, 1, 14, 0)

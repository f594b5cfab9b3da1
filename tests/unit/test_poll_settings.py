"""How long a `cancelling` batch waits before its next status check."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from batch_canceller.follow_up import PollSettings

SINCE = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
POLL = PollSettings(initial_delay_seconds=60, max_delay_seconds=900, timeout_seconds=86400)


def test_first_check_waits_the_initial_delay() -> None:
    assert POLL.delay_before(1, SINCE, SINCE) == 60


def test_delay_doubles_with_each_attempt() -> None:
    delays = [POLL.delay_before(attempt, SINCE, SINCE) for attempt in range(1, 5)]
    assert delays == [60, 120, 240, 480]


@pytest.mark.parametrize("attempt", [5, 6, 20, 1000])
def test_delay_is_capped_at_the_maximum(attempt: int) -> None:
    assert POLL.delay_before(attempt, SINCE, SINCE) == 900


def test_delay_never_reaches_past_the_timeout() -> None:
    # GIVEN a watch with 100 s left before it times out
    now = SINCE + timedelta(seconds=86400 - 100)

    # WHEN the next check would otherwise wait the full 900 s
    delay = POLL.delay_before(10, SINCE, now)

    # THEN it comes exactly when the watch times out, not later
    assert delay == 100


def test_delay_with_a_fraction_of_a_second_left_lands_on_the_timeout() -> None:
    now = SINCE + timedelta(seconds=86400 - 99.3)
    delay = POLL.delay_before(10, SINCE, now)
    left = 99.3
    assert delay == math.ceil(left)
    assert delay < left + 1


@pytest.mark.parametrize("overdue", [0, 1, 3600, 10 * 86400])
def test_delay_at_or_after_the_timeout_is_zero_not_negative(overdue: int) -> None:
    now = SINCE + timedelta(seconds=86400 + overdue)
    assert POLL.delay_before(3, SINCE, now) == 0


def test_delay_is_an_int_for_sqs() -> None:
    now = SINCE + timedelta(seconds=86400 - 12.5)
    delay = POLL.delay_before(1, SINCE, now)
    assert type(delay) is int
    assert delay == 13


def test_every_delay_is_within_zero_and_the_maximum() -> None:
    poll = PollSettings(initial_delay_seconds=7, max_delay_seconds=50, timeout_seconds=300)
    for attempt in range(1, 40):
        for elapsed in range(0, 400, 13):
            delay = poll.delay_before(attempt, SINCE, SINCE + timedelta(seconds=elapsed))
            assert 0 <= delay <= 50
            assert elapsed + delay <= max(300, elapsed)


def test_zero_initial_delay_checks_at_once_then_still_backs_off() -> None:
    poll = PollSettings(initial_delay_seconds=0, max_delay_seconds=900, timeout_seconds=86400)
    now = datetime(2026, 1, 1, tzinfo=UTC)

    delays = [poll.delay_before(attempt, now, now) for attempt in (1, 2, 3, 4)]

    assert delays == [0, 2, 4, 8]


def test_with_webhooks_only_the_first_check_waits_the_webhook_delay() -> None:
    with_webhooks = PollSettings(60, 900, 86400, first_delay_seconds=600)
    delays = [with_webhooks.delay_before(attempt, SINCE, SINCE) for attempt in range(1, 6)]
    assert delays == [600, 120, 240, 480, 900]


def test_without_webhooks_the_delays_are_the_same_as_before() -> None:
    without = PollSettings(60, 900, 86400, first_delay_seconds=None)
    attempts = range(1, 12)
    assert [without.delay_before(a, SINCE, SINCE) for a in attempts] == [
        POLL.delay_before(a, SINCE, SINCE) for a in attempts
    ]


def test_the_webhook_first_delay_still_stops_at_the_timeout() -> None:
    short = PollSettings(60, 900, 300, first_delay_seconds=600)
    assert short.delay_before(1, SINCE, SINCE) == 300

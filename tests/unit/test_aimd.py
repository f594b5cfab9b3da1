"""The AIMD window of one invocation, pure: every clock reading is given."""

from __future__ import annotations

import pytest

from batch_canceller.aimd import Answer, Settings, Ticket, Window
from batch_canceller.rate_headers import Budget

ACCEPTED, LIMITED, NEUTRAL = Answer.ACCEPTED, Answer.RATE_LIMITED, Answer.NEUTRAL


def full(window: Window, now: float = 0.0) -> list[Ticket]:
    """Take every free slot; the tickets."""
    tickets = []
    while window.has_slot():
        tickets.append(window.take(now))
    return tickets


def round_trip(window: Window, sent: float, seconds: float, answer: Answer = ACCEPTED) -> None:
    window.give_back(window.take(sent), answer, now=sent + seconds)


def test_starts_at_the_start_and_never_lets_more_than_the_limit_in_flight() -> None:
    window = Window(Settings(ceiling=32, start=8))

    tickets = full(window)

    assert len(tickets) == 8
    assert window.in_flight == 8
    assert not window.has_slot()


def test_a_wave_of_429s_cuts_once_and_a_later_wave_cuts_again() -> None:
    window = Window(Settings(ceiling=32, start=16))
    wave = full(window)

    changes = [window.give_back(ticket, LIMITED, now=0.0) for ticket in wave]

    assert [change.cut for change in changes] == [True] + [False] * 15
    assert window.limit == 8
    second_wave = full(window, now=0.1)
    window.give_back(second_wave[0], LIMITED, now=0.1)
    assert window.limit == 4


def test_never_more_than_the_ceiling_nor_fewer_than_one_in_flight() -> None:
    window = Window(Settings(ceiling=4, start=2))
    for _ in range(10):
        window.give_back(window.take(0.0), LIMITED, now=0.0)
    assert window.window == 0.25  # the floor
    assert window.limit == 1
    assert window.has_slot()

    for n in range(1000):
        round_trip(window, sent=float(n), seconds=1.0)
    assert window.limit == 4
    assert window.window == 4.0


def test_with_round_trips_of_a_second_or_more_it_grows_one_per_window_of_successes() -> None:
    window = Window(Settings(ceiling=32, start=4))

    for _ in range(4):  # one round trip's worth at a window of 4
        round_trip(window, sent=0.0, seconds=1.0)

    assert window.limit == 4
    assert 4.9 < window.window < 5.0  # +1/4 each, on a growing window
    for _ in range(5):
        round_trip(window, sent=1.0, seconds=1.0)
    assert window.limit == 5


def test_with_short_round_trips_it_grows_by_about_one_a_second() -> None:
    window = Window(Settings(ceiling=32, start=4))
    now = 0.0
    while now < 1.0:  # a second of round trips of 50 ms, four at a time
        for _ in range(4):
            round_trip(window, sent=now, seconds=0.05)
        now += 0.05
    assert 4.9 < window.window < 5.1


def test_below_one_requests_are_spaced_a_round_trip_over_the_window_apart() -> None:
    window = Window(Settings(ceiling=8, start=1))
    round_trip(window, sent=0.0, seconds=0.1)  # a round trip of 100 ms measured
    window.give_back(window.take(1.0), LIMITED, now=1.0)  # cut to 1.1 / 2

    ticket = window.take(2.0)

    assert window.window == pytest.approx(0.55)
    assert window.paused_for(2.0) == pytest.approx(0.1 / 0.55)
    assert window.paused_for(2.0 + 0.1 / 0.55) == 0.0
    window.give_back(ticket, ACCEPTED, now=2.1)


def test_errors_that_say_nothing_of_the_rate_change_nothing() -> None:
    window = Window(Settings(ceiling=32, start=8))
    window.give_back(window.take(0.0), NEUTRAL, now=1.0)
    assert (window.window, window.generation, window.in_flight, window.rtt) == (8.0, 0, 0, None)


def test_retry_after_pauses_until_then_and_only_moves_later() -> None:
    window = Window(Settings(ceiling=32, start=8))
    first, second = window.take(0.0), window.take(0.0)

    paused = window.give_back(first, LIMITED, now=100.0, retry_after=2.0)
    earlier = window.give_back(second, LIMITED, now=100.5, retry_after=0.5)

    assert paused.paused_until == 102.0
    assert earlier.paused_until is None  # ends at 101.0: inside the pause already
    assert window.paused_for(101.0) == 1.0
    assert window.paused_for(102.0) == 0.0
    assert window.pause_until(101.0) is None
    assert window.pause_until(105.0) == 105.0


def test_a_429_without_retry_after_cuts_but_does_not_pause() -> None:
    window = Window(Settings(ceiling=32, start=8))
    change = window.give_back(window.take(0.0), LIMITED, now=10.0)
    assert change.cut
    assert change.paused_until is None
    assert window.paused_for(10.0) == 0.0


@pytest.mark.parametrize(("ceiling", "start"), [(4, 0), (4, 5)])
def test_a_start_outside_one_to_the_ceiling_is_refused(ceiling: int, start: int) -> None:
    with pytest.raises(ValueError, match="start window"):
        Settings(ceiling, start)


def budget(remaining: int, limit: int = 100) -> Budget:
    return Budget(limit, remaining, 1.0)


def test_slow_start_doubles_each_round_trip_until_the_ceiling_then_grows_additively() -> None:
    window = Window(Settings(ceiling=16, start=2, slow_start=True))
    sizes = []
    for trip in range(4):
        for ticket in full(window, now=float(trip)):
            window.give_back(ticket, ACCEPTED, now=trip + 0.1, budget=budget(90))
        sizes.append(window.limit)
    assert sizes == [4, 8, 16, 16]
    assert not window.slow_start


def test_slow_start_ends_at_the_first_429_or_a_budget_below_half() -> None:
    limited = Window(Settings(ceiling=32, start=8, slow_start=True))
    limited.give_back(limited.take(0.0), LIMITED, now=0.1)
    assert (limited.window, limited.slow_start) == (4.0, False)

    held = Window(Settings(ceiling=32, start=8, slow_start=True))
    held.give_back(held.take(0.0), ACCEPTED, now=0.1, budget=budget(40))
    assert (held.window, held.slow_start) == (8.0, False)
    round_trip(held, sent=1.0, seconds=1.0)  # no headers: grows, but additively (< 1 / 8)
    assert 8.0 < held.window <= 8.125


def test_no_growth_while_less_than_half_the_budget_remains() -> None:
    window = Window(Settings(ceiling=32, start=8))
    for remaining in (49, 30, 11):
        window.give_back(window.take(0.0), ACCEPTED, now=1.0, budget=budget(remaining))
    assert window.window == 8.0
    window.give_back(window.take(1.0), ACCEPTED, now=2.0, budget=budget(50))
    assert window.window == pytest.approx(8.125)


def test_a_budget_nearly_spent_eases_once_per_generation_and_a_429_still_halves() -> None:
    window = Window(Settings(ceiling=32, start=10))
    wave = full(window)

    changes = [window.give_back(t, ACCEPTED, now=0.1, budget=budget(5)) for t in wave[:3]]

    assert [change.eased for change in changes] == [True, False, False]
    assert window.window == pytest.approx(9.0)
    assert not any(change.cut for change in changes)
    later = window.take(0.2)
    assert window.give_back(later, LIMITED, now=0.3).cut  # sent after the ease: halves
    assert window.window == pytest.approx(4.5)


def test_budget_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="ease_at"):
        Settings(8, 2, ease_at=0.6, grow_above=0.5)

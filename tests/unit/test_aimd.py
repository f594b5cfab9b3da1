"""The AIMD window of one invocation, pure: every clock reading is given."""

from __future__ import annotations

import pytest

from batch_canceller.aimd import Answer, Settings, Window

ACCEPTED, LIMITED, NEUTRAL = Answer.ACCEPTED, Answer.RATE_LIMITED, Answer.NEUTRAL


def full(window: Window) -> list[int]:
    """Take every free slot; the tickets."""
    tickets = []
    while window.has_slot():
        tickets.append(window.take())
    return tickets


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
    second_wave = full(window)
    window.give_back(second_wave[0], LIMITED, now=0.1)
    assert window.limit == 4


def test_never_below_one_nor_above_the_ceiling() -> None:
    window = Window(Settings(ceiling=4, start=2))
    for _ in range(5):
        window.give_back(window.take(), LIMITED, now=0.0)
    assert window.limit == 1
    assert window.has_slot()

    for _ in range(1000):
        window.give_back(window.take(), ACCEPTED, now=0.0)
    assert window.limit == 4
    assert window.window == 4.0


def test_successes_grow_it_by_about_one_per_window_of_them() -> None:
    window = Window(Settings(ceiling=32, start=4))

    for _ in range(4):  # one round trip's worth at a window of 4
        window.give_back(window.take(), ACCEPTED, now=0.0)

    assert window.limit == 4
    assert 4.9 < window.window < 5.0  # +1/4 each, on a growing window
    for _ in range(5):
        window.give_back(window.take(), ACCEPTED, now=0.0)
    assert window.limit == 5


def test_errors_that_say_nothing_of_the_rate_change_nothing() -> None:
    window = Window(Settings(ceiling=32, start=8))
    window.give_back(window.take(), NEUTRAL, now=0.0)
    assert (window.window, window.generation, window.in_flight) == (8.0, 0, 0)


def test_retry_after_pauses_until_then_and_only_moves_later() -> None:
    window = Window(Settings(ceiling=32, start=8))
    first, second = window.take(), window.take()

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
    change = window.give_back(window.take(), LIMITED, now=10.0)
    assert change.cut
    assert change.paused_until is None
    assert window.paused_for(10.0) == 0.0


@pytest.mark.parametrize(("ceiling", "start"), [(4, 0), (4, 5)])
def test_a_start_outside_one_to_the_ceiling_is_refused(ceiling: int, start: int) -> None:
    with pytest.raises(ValueError, match="start window"):
        Settings(ceiling, start)

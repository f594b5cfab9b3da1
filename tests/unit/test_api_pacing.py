"""The invocation's pacing: slots of its window, a pause for every thread, the shared pause
read at most once a second and written only for pauses worth sharing. An injected clock, no
sleeps but where threads must really wait (and then only order is asserted)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from batch_canceller import aimd
from batch_canceller.api_errors import OutOfTime
from batch_canceller.api_pacing import (
    MAX_PAUSE_SECONDS,
    UNPACED,
    AdaptiveConcurrency,
    AdaptivePacing,
    current_pacing,
)
from batch_canceller.deadline import Deadline

LIMITED = {"retry-after-ms": "2000"}


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Observer:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: list[tuple[str, float]] = []

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] += value

    def sample(self, name: str, value: float) -> None:
        self.samples.append((name, value))


class Shared:
    def __init__(self, until: float | None = None, fail: bool = False) -> None:
        self.until = until
        self.fail = fail
        self.reads = 0
        self.published: list[float] = []

    def read(self) -> float | None:
        self.reads += 1
        if self.fail:
            raise RuntimeError("table unavailable")
        return self.until

    def publish(self, until: float) -> None:
        if self.fail:
            raise RuntimeError("table unavailable")
        self.published.append(until)


def roomy() -> Deadline:
    return Deadline(lambda: 60.0, reserve_seconds=0.0)


def pacing(
    start: int = 4, shared: Shared | None = None, clock: Clock | None = None
) -> tuple[AdaptivePacing, Observer, Clock]:
    observer, clock = Observer(), clock or Clock()
    made = AdaptivePacing(aimd.Settings(32, start), observer, shared, clock)
    return made, observer, clock


def answer(pace: AdaptivePacing, status: int, headers: dict[str, str] | None = None) -> None:
    with pace.slot(roomy()) as slot:
        slot.answered(status, headers or {})


def test_a_429_with_retry_after_pauses_the_invocation_and_cuts_its_window() -> None:
    pace, observer, clock = pacing(start=8)

    answer(pace, 429, LIMITED)

    assert pace.limit == 4
    assert observer.counts == Counter({"InFlightCuts": 1, "RateLimitPauses": 1})
    assert ("InFlightLimit", 4) in observer.samples
    # Any thread's next request is held: with 1.5 s of room left it cannot wait 2 s.
    short = Deadline(lambda: 2.5, reserve_seconds=0.0)
    with pytest.raises(OutOfTime) as stopped, pace.slot(short):
        pass
    assert stopped.value.retry_after == pytest.approx(2.0)
    clock.now += 2.0
    answer(pace, 200)  # the pause is over
    assert pace.limit == 4


def test_statuses_that_say_nothing_of_the_rate_leave_the_window_alone() -> None:
    pace, observer, _ = pacing(start=4)
    for status in (500, 503, 408):
        answer(pace, status)
    with pace.slot(roomy()):
        pass  # a network error: no answer at all
    assert pace.limit == 4
    assert observer.counts == Counter()


def test_no_slot_before_the_deadline_is_out_of_time_not_a_wait_past_it() -> None:
    pace, _, _ = pacing(start=1)
    tight = Deadline(lambda: 0.9, reserve_seconds=0.0)
    with pace.slot(roomy()), pytest.raises(OutOfTime), pace.slot(tight):
        pass


def test_the_shared_pause_is_read_at_most_once_a_second_and_pauses_this_invocation() -> None:
    clock = Clock()
    shared = Shared(until=clock.now + 30.0)
    pace, observer, _ = pacing(shared=shared, clock=clock)
    short = Deadline(lambda: 10.0, reserve_seconds=0.0)

    for _ in range(3):
        with pytest.raises(OutOfTime), pace.slot(short):
            pass
    assert shared.reads == 1
    assert observer.counts["RateLimitPausesShared"] == 1
    clock.now += 1.0
    with pytest.raises(OutOfTime), pace.slot(short):
        pass
    assert shared.reads == 2
    assert observer.counts["RateLimitPausesShared"] == 1  # the same end: learned once


def test_a_pause_in_the_past_or_none_changes_nothing() -> None:
    clock = Clock()
    for until in (None, clock.now - 5.0):
        pace, observer, _ = pacing(shared=Shared(until=until), clock=clock)
        answer(pace, 200)
        assert observer.counts["RateLimitPausesShared"] == 0


def test_only_pauses_of_a_second_or_more_are_shared_and_a_wave_writes_once() -> None:
    clock = Clock()
    shared = Shared()
    pace, _, _ = pacing(start=8, shared=shared, clock=clock)

    answer(pace, 429, {"retry-after-ms": "20"})
    clock.now += 0.02
    # One wave in flight: their 429s come back milliseconds apart, naming about the same end.
    held = [pace.slot(roomy()) for _ in range(3)]
    for slot in [manager.__enter__() for manager in held]:
        slot.answered(429, LIMITED)
    for manager in held:
        manager.__exit__(None, None, None)
        clock.now += 0.01

    assert shared.published == [pytest.approx(1_002.02)]


def test_a_table_that_fails_is_counted_and_the_pause_still_holds_here() -> None:
    pace, observer, _ = pacing(shared=Shared(fail=True))
    answer(pace, 429, LIMITED)
    assert observer.counts["RateLimitShareFailures"] == 2  # the read, then the write
    with pytest.raises(OutOfTime), pace.slot(Deadline(lambda: 2.5, reserve_seconds=0.0)):
        pass


def test_a_cold_container_slow_starts_and_the_next_invocation_starts_where_the_last_ended() -> None:
    observer = Observer()
    concurrency = AdaptiveConcurrency(16, observer, clock=Clock())

    with concurrency.invocation() as first:
        assert current_pacing() is first
        assert first.limit == aimd.SLOW_START == 2
        answer(first, 200)
        answer(first, 200)  # +1 a success: doubled in a round trip's worth
        assert first.limit == 4
        answer(first, 429)
        answer(first, 429)  # sent after the cut: cuts again
    assert current_pacing() is UNPACED
    with concurrency.invocation() as second:
        assert second.limit == 1
        answer(second, 200)
        assert second.limit == 1  # no slow start: grows additively from where it was


def budget_headers(remaining: int, reset: str = "1s", limit: int = 50) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
    }


def test_none_remaining_pauses_the_invocation_for_the_reset_and_is_not_shared() -> None:
    shared = Shared()
    pace, observer, clock = pacing(start=8, shared=shared)

    answer(pace, 200, budget_headers(0, "1.5s"))

    assert observer.counts["BudgetEmptyPauses"] == 1
    assert observer.counts["RateLimitPauses"] == 0
    assert shared.published == []
    with pytest.raises(OutOfTime) as stopped, pace.slot(Deadline(lambda: 1.0, 0.0)):
        pass
    assert stopped.value.retry_after == pytest.approx(1.5)
    clock.now += 1.5
    answer(pace, 200)  # the pause is over


@pytest.mark.parametrize("reset", ["6m0s", "99999h"])
def test_a_reset_past_the_cap_pauses_for_the_cap(reset: str) -> None:
    pace, _, _ = pacing(start=8)
    answer(pace, 200, budget_headers(0, reset))
    with pytest.raises(OutOfTime) as stopped, pace.slot(roomy()):
        pass
    assert stopped.value.retry_after == pytest.approx(MAX_PAUSE_SECONDS)


@pytest.mark.parametrize(
    "headers",
    [
        budget_headers(0, "soon"),
        budget_headers(0, "0s"),
        budget_headers(0, "nan"),
        {**budget_headers(0), "x-ratelimit-limit-requests": "many"},
        budget_headers(60),  # more left than the limit: garbage
    ],
)
def test_budget_headers_that_name_no_wait_pause_nothing(headers: dict[str, str]) -> None:
    pace, observer, _ = pacing(start=8)
    answer(pace, 200, headers)
    assert observer.counts["BudgetEmptyPauses"] == 0
    answer(pace, 200)  # sent at once


def test_a_budget_nearly_spent_eases_the_window_before_any_429() -> None:
    pace, observer, _ = pacing(start=10)
    answer(pace, 200, budget_headers(3))  # 6 % of the limit left
    assert pace.limit == 9
    assert observer.counts["InFlightEases"] == 1
    assert observer.counts["InFlightCuts"] == 0


def test_unpaced_outside_an_invocation() -> None:
    assert current_pacing() is UNPACED
    assert not UNPACED.retries_rate_limits
    with UNPACED.slot(roomy()) as slot:
        slot.answered(429, LIMITED)


def test_threads_never_exceed_the_window_and_a_pause_holds_every_one() -> None:
    """Real threads, real time; only counts and order are asserted."""
    pace = AdaptivePacing(aimd.Settings(8, 3), Observer())
    lock = threading.Lock()
    in_flight, most, starts = 0, 0, []

    def request(index: int) -> None:
        nonlocal in_flight, most
        with pace.slot(roomy()) as slot:
            with lock:
                in_flight += 1
                most = max(most, in_flight)
                starts.append(time.time())
            time.sleep(0.01)
            with lock:
                in_flight -= 1
            if index == 0:
                slot.answered(429, {"retry-after-ms": "300"})
                paused_until.append(time.time() + 0.3)
            else:
                slot.answered(200, {})

    paused_until: list[float] = []
    first = threading.Thread(target=request, args=(0,))
    first.start()
    first.join()
    others = [threading.Thread(target=request, args=(i,)) for i in range(1, 12)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join()

    assert most <= 3
    # Every request after the 429 started once its pause was over.
    assert all(start >= paused_until[0] - 0.01 for start in starts[1:])


@pytest.mark.parametrize("hint", ["86400", "inf", "1e12"])
def test_a_hint_past_the_cap_pauses_this_invocation_for_the_cap_and_is_not_shared(
    hint: str,
) -> None:
    shared = Shared()
    pace, _, _ = pacing(start=8, shared=shared)

    answer(pace, 429, {"retry-after": hint})

    with pytest.raises(OutOfTime) as stopped, pace.slot(roomy()):
        pass
    assert stopped.value.retry_after == pytest.approx(MAX_PAUSE_SECONDS)
    assert shared.published == []


@pytest.mark.parametrize("hint", ["0", "-1", "nan"])
def test_a_hint_of_no_wait_pauses_nothing(hint: str) -> None:
    pace, observer, _ = pacing(start=8)
    answer(pace, 429, {"retry-after": hint})
    assert observer.counts["RateLimitPauses"] == 0
    answer(pace, 200)  # sent at once


def test_the_first_shared_read_holds_every_other_thread() -> None:
    clock = Clock()
    reading, release = threading.Event(), threading.Event()

    class SlowShared(Shared):
        def read(self) -> float | None:
            reading.set()
            release.wait(5)
            return super().read()

    pace, _, _ = pacing(shared=SlowShared(until=clock.now + 30.0), clock=clock)
    outcomes: list[str] = []

    def request() -> None:
        try:
            with pace.slot(Deadline(lambda: 10.0, reserve_seconds=0.0)):
                outcomes.append("sent")
        except OutOfTime:
            outcomes.append("held")

    first = threading.Thread(target=request)
    first.start()
    assert reading.wait(5)
    others = [threading.Thread(target=request) for _ in range(3)]
    for thread in others:
        thread.start()
    time.sleep(0.1)  # the others are waiting for the read, not sending
    assert outcomes == []
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert outcomes == ["held"] * 4

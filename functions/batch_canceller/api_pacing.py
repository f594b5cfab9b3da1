"""One rate-limit budget per invocation: every API request of the invocation (all its pool
threads, its sweep pages) takes a slot of the invocation's AIMD window (`aimd`), and a
`Retry-After` pauses all of them, not only the request that got it.

Concurrent invocations learn each other's pauses through one small item of the table
(`shared_pause`): a 429 asking for at least SHARE_MIN_SECONDS writes it, and every
invocation reads it at most once every SHARED_READ_SECONDS while it sends requests.

The invocation's pacing travels in a context variable, like its deadline (`aws_deadline`):
`AdaptiveConcurrency.invocation()` sets it in `Application.handle`, `carrying_deadline` hands
it to the pool threads, and a client used outside an invocation (scripts, the CLI) or with
ADAPTIVE_CONCURRENCY=false is not paced (each request honours only its own 429).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from batch_canceller import aimd, rate_headers
from batch_canceller.api_errors import MIN_REQUEST_SECONDS, OutOfTime
from batch_canceller.deadline import Deadline
from batch_canceller.retry_policy import MAX_RETRY_AFTER_SECONDS, retry_after_seconds

# The shared item is read at most this often per invocation.
SHARED_READ_SECONDS = 1.0
# A shorter pause is over before most others would read it: not worth a write.
SHARE_MIN_SECONDS = 1.0
# One wave of 429s names (nearly) one end: a write only when it moves the shared end this much.
SHARE_STEP_SECONDS = 0.25
# A thread waiting for a slot looks at the deadline at least this often.
SLOT_RECHECK_SECONDS = 1.0
# One answer pauses the invocation at most this long. A longer hint (a gateway's `86400`, a
# date in 9999) pauses only the invocation that got it, for this long, and is not shared: one
# bad answer must not stop every invocation (the others meet a real limit on their own).
MAX_PAUSE_SECONDS = MAX_RETRY_AFTER_SECONDS


class PacingObserver(Protocol):
    def count(self, name: str, value: int = 1) -> None: ...

    def sample(self, name: str, value: float) -> None: ...


class PauseStore(Protocol):
    """Where invocations share the end of a pause (epoch seconds); best effort."""

    def read(self) -> float | None:
        """The shared end, if there is one a writer could have meant (not years ahead)."""
        ...

    def publish(self, until: float) -> None: ...


class Slot:
    """One request's place in the window; the caller says what the API answered."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: Mapping[str, str] = {}

    def answered(self, status: int, headers: Mapping[str, str]) -> None:
        self.status, self.headers = status, headers


class Unpaced:
    """No window, no shared pause: today's fixed MAX_IN_FLIGHT behaviour."""

    retries_rate_limits = False

    @contextmanager
    def slot(self, deadline: Deadline) -> Iterator[Slot]:
        yield Slot()


UNPACED = Unpaced()
_current: contextvars.ContextVar[Unpaced | AdaptivePacing] = contextvars.ContextVar(
    "api_pacing", default=UNPACED
)


def current_pacing() -> Unpaced | AdaptivePacing:
    return _current.get()


def classify(status: int | None) -> aimd.Answer:
    if status == 429:
        return aimd.Answer.RATE_LIMITED
    if status is None or status in (408, 425) or status >= 500:
        return aimd.Answer.NEUTRAL  # says nothing about the rate
    return aimd.Answer.ACCEPTED


class AdaptivePacing:
    """The window and pause of one invocation, shared by its threads."""

    # A 429 is not a failure of the request but a wait: retried until the deadline, then the
    # work goes back to the queue (deferred), never counting towards the DLQ.
    retries_rate_limits = True

    def __init__(
        self,
        settings: aimd.Settings,
        observer: PacingObserver,
        shared: PauseStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._window = aimd.Window(settings)
        self._observer = observer
        self._shared = shared
        self._clock = clock
        self._cond = threading.Condition()
        self._read_at = float("-inf")
        self._reading = False
        self._read_once = False  # the invocation's first read of the shared pause is over
        self._shared_until = 0.0  # the latest end written to or read from the shared item

    @property
    def limit(self) -> int:
        with self._cond:
            return self._window.limit

    @contextmanager
    def slot(self, deadline: Deadline) -> Iterator[Slot]:
        ticket = self._acquire(deadline)
        slot = Slot()
        try:
            yield slot
        finally:
            self._release(ticket, slot.status, slot.headers)

    def _acquire(self, deadline: Deadline) -> aimd.Ticket:
        self._refresh_shared(deadline)
        with self._cond:
            while True:
                pause = self._window.paused_for(self._clock())
                if pause > 0:
                    if not deadline.allows(pause + MIN_REQUEST_SECONDS):
                        raise OutOfTime(
                            f"rate limited: requests paused {pause:.1f}s, past the deadline",
                            429,
                            retry_after=pause,
                        )
                    self._cond.wait(pause)
                    continue
                if self._window.has_slot():
                    return self._window.take(self._clock())
                self._wait_a_while(deadline, "no API request slot free before the deadline")

    def _wait_a_while(self, deadline: Deadline, why: str) -> None:
        """Under the lock: wait to be notified, at most until the deadline leaves no room."""
        room = deadline.usable_seconds() - MIN_REQUEST_SECONDS
        if room <= 0:
            raise OutOfTime(why)
        self._cond.wait(min(room, SLOT_RECHECK_SECONDS))

    def _release(self, ticket: aimd.Ticket, status: int | None, headers: Mapping[str, str]) -> None:
        answer = classify(status)
        budget = rate_headers.budget(headers) if answer is not aimd.Answer.NEUTRAL else None
        hint: float | None = None
        if answer is aimd.Answer.RATE_LIMITED:
            hint = retry_after_seconds(headers)
        elif budget is not None and budget.remaining == 0:
            # None left for anyone: the next request would be a 429. Wait for the refill the
            # reset names, bounded as a Retry-After is; every invocation sees the same
            # headers, so this is not shared.
            hint = budget.reset_seconds
        # A hint of no wait pauses nothing (the request's own backoff spaces its retry).
        pause = min(hint, MAX_PAUSE_SECONDS) if hint is not None and hint > 0 else None
        publish: float | None = None
        with self._cond:
            before = self._window.limit
            change = self._window.give_back(ticket, answer, self._clock(), pause, budget)
            after = self._window.limit
            if change.cut:
                self._observer.count("InFlightCuts")
            if change.eased:
                self._observer.count("InFlightEases")
            if after != before:
                self._observer.sample("InFlightLimit", after)
            until = change.paused_until
            if until is not None:
                limited = answer is aimd.Answer.RATE_LIMITED
                if limited:
                    self._observer.count("RateLimitPauses")
                else:
                    self._observer.count("BudgetEmptyPauses")
                shareable = (
                    limited and hint is not None and SHARE_MIN_SECONDS <= hint <= MAX_PAUSE_SECONDS
                )
                if shareable and until >= self._shared_until + SHARE_STEP_SECONDS:
                    publish = self._shared_until = until
            free = after - self._window.in_flight
            if free > 0:
                self._cond.notify(free)
        if publish is not None and self._shared is not None:
            try:
                self._shared.publish(publish)
            except Exception:
                self._observer.count("RateLimitShareFailures")

    def _refresh_shared(self, deadline: Deadline) -> None:
        """At most once a second, one thread reads the shared pause; the others go on, except
        during the invocation's first read: until it is over they wait, or a pause shared
        before the invocation started would meet its first wave of requests."""
        if self._shared is None:
            return
        with self._cond:
            while self._reading and not self._read_once:
                self._wait_a_while(deadline, "the shared rate-limit pause unread at the deadline")
            now = self._clock()
            if self._reading or now - self._read_at < SHARED_READ_SECONDS:
                return
            self._reading, self._read_at = True, now
        until: float | None = None
        try:
            until = self._shared.read()
        except Exception:
            self._observer.count("RateLimitShareFailures")
        finally:
            with self._cond:
                self._reading, self._read_once = False, True
                if until is not None and until > self._clock():
                    self._shared_until = max(self._shared_until, until)
                    if self._window.pause_until(until) is not None:
                        self._observer.count("RateLimitPausesShared")
                self._cond.notify_all()


class AdaptiveConcurrency:
    """Per container: a pacing for each invocation. A cold container's first invocation slow
    starts (aimd.SLOW_START, doubling every round trip until the limit shows); each later one
    starts from the window the last ended with, so that a warm container does not start every
    invocation with a wave of 429s, nor crawl up again."""

    def __init__(
        self,
        max_in_flight: int,
        observer: PacingObserver,
        shared: PauseStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ceiling = max_in_flight
        self._observer = observer
        self._shared = shared
        self._clock = clock
        self._last: int | None = None

    def _settings(self) -> aimd.Settings:
        if self._last is None:
            return aimd.Settings(
                self._ceiling, min(self._ceiling, aimd.SLOW_START), slow_start=True
            )
        return aimd.Settings(self._ceiling, min(self._ceiling, max(1, self._last)))

    @contextmanager
    def invocation(self) -> Iterator[AdaptivePacing]:
        settings = self._settings()
        pacing = AdaptivePacing(settings, self._observer, self._shared, self._clock)
        self._observer.sample("InFlightLimit", settings.start)
        token = _current.set(pacing)
        try:
            yield pacing
        finally:
            _current.reset(token)
            self._last = pacing.limit
            self._observer.sample("InFlightLimit", self._last)

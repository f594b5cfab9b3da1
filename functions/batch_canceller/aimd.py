"""How many API requests one invocation keeps in flight, and until when it sends none: additive
increase, multiplicative decrease (AIMD) on 429s, and the pause a `Retry-After` asks for.

Pure: no threads, no clock of its own (every reading is passed in), no I/O. `api_pacing` holds
it under a lock; docs/rate-limits.md argues the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from batch_canceller.rate_headers import Budget

# A 429 halves the window (TCP's choice: the aggregate of many flows halving is a smooth
# sawtooth around the limit, and a single flow recovers in a few windows).
DECREASE = 0.5
# Successes grow the window by at most 1 per window's worth of them (+1 a round trip, TCP's
# congestion avoidance), and by at most 1 per GROWTH_SECONDS: with short round trips +1 each
# would 429 too often (docs/rate-limits.md).
INCREASE = 1.0
GROWTH_SECONDS = 1.0
# Below one request in flight the window spaces requests (one per round trip / window).
FLOOR = 0.25
# Weight of a new round-trip sample in the running estimate.
RTT_WEIGHT = 0.2
# A cold container's window: it doubles every round trip (slow start) until a 429, a budget
# below GROW_ABOVE, or the ceiling.
SLOW_START = 2
# The budget headers (`rate_headers`), read on every success: no growth while less than this
# share of the limit remains; below EASE_AT the window is cut by EASE, once per generation,
# before the bucket is empty and 429s do it by half.
GROW_ABOVE = 0.5
EASE_AT = 0.1
EASE = 0.9


class Answer(Enum):
    """What an attempt tells the limiter: the server took it, refused it for the rate, or said
    nothing about the rate (a network error, a 5xx)."""

    ACCEPTED = "accepted"
    RATE_LIMITED = "rate_limited"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Settings:
    ceiling: int  # MAX_IN_FLIGHT: never more
    start: int  # the window an invocation starts with
    decrease: float = DECREASE
    increase: float = INCREASE
    growth_seconds: float = GROWTH_SECONDS
    floor: float = FLOOR
    slow_start: bool = False  # double every round trip until the first sign of the limit
    grow_above: float = GROW_ABOVE
    ease_at: float = EASE_AT
    ease: float = EASE

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.ceiling:
            raise ValueError("the start window must be within 1..ceiling")
        if not 0 < self.decrease < 1 or self.increase <= 0 or self.growth_seconds <= 0:
            raise ValueError("decrease must be in (0, 1), increase and growth_seconds > 0")
        if not 0 < self.floor <= 1:
            raise ValueError("the floor must be within (0, 1]")
        if not 0 <= self.ease_at <= self.grow_above <= 1 or not 0 < self.ease <= 1:
            raise ValueError("need 0 <= ease_at <= grow_above <= 1 and ease in (0, 1]")


@dataclass(frozen=True)
class Ticket:
    """A request in flight: the generation it was sent in, and when."""

    generation: int
    sent_at: float


@dataclass(frozen=True)
class Change:
    """What one answer changed: the window was cut, the pause was moved later."""

    cut: bool = False
    paused_until: float | None = None
    eased: bool = False


class Window:
    """The window (a float; `limit` is its whole part, 1 at least) and the requests in flight.
    Below 1 (down to the floor) one request is in flight at a time, and each starts a round
    trip / window after the one before: the share of a budget smaller than one request per
    round trip per invocation (`R x RTT < invocations`).

    A 429 cuts the window at most once per generation: every request carries the generation it
    was sent in, and only a 429 of a request sent since the last cut cuts again. So a wave of
    requests that all meet an empty bucket (one round trip's worth) counts as one signal, as in
    TCP's one cut per window of losses, without a timer.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window = float(settings.start)
        self.generation = 0
        self.in_flight = 0
        self.paused_until = 0.0
        self.next_start = 0.0
        self.rtt: float | None = None
        self.slow_start = settings.slow_start

    @property
    def limit(self) -> int:
        return max(1, min(self.settings.ceiling, int(self.window)))

    def paused_for(self, now: float) -> float:
        """Seconds until a request may be sent (a pause, or the spacing below 1; 0: now)."""
        return max(0.0, self.paused_until - now, self.next_start - now)

    def has_slot(self) -> bool:
        return self.in_flight < self.limit

    def take(self, now: float) -> Ticket:
        """A request is sent now."""
        self.in_flight += 1
        if self.window < 1.0 and self.rtt is not None:
            self.next_start = now + self.rtt / self.window
        return Ticket(self.generation, now)

    def give_back(
        self,
        ticket: Ticket,
        answer: Answer,
        now: float,
        retry_after: float | None = None,
        budget: Budget | None = None,
    ) -> Change:
        """The request's answer: the window grows, holds or eases on what the budget says, or
        is cut by a 429 (once per generation); a `retry_after` (after a 429, or the budget's
        reset when none remains) pauses every request until `now + retry_after`."""
        self.in_flight = max(0, self.in_flight - 1)
        if answer is Answer.NEUTRAL:
            return Change()
        paused = self.pause_until(now + retry_after) if retry_after is not None else None
        if answer is Answer.RATE_LIMITED:
            cut = self._reduce(ticket, self.settings.decrease)
            return Change(cut, paused)
        sample = max(0.0, now - ticket.sent_at)
        self.rtt = sample if self.rtt is None else self.rtt + RTT_WEIGHT * (sample - self.rtt)
        left = budget.share_left if budget is not None else 1.0
        if left <= self.settings.ease_at:
            return Change(paused_until=paused, eased=self._reduce(ticket, self.settings.ease))
        if left < self.settings.grow_above:
            self.slow_start = False  # the limit is near: from here on, grow only additively
            return Change(paused_until=paused)
        if self.slow_start:
            grown = self.window + 1.0  # +1 per success: doubles each round trip
        else:
            step = min(self.settings.increase, self.rtt / self.settings.growth_seconds)
            grown = self.window + step / self.window
        self.window = min(float(self.settings.ceiling), grown)
        self.slow_start = self.slow_start and self.window < self.settings.ceiling
        return Change(paused_until=paused)

    def _reduce(self, ticket: Ticket, factor: float) -> bool:
        """Multiplies the window by `factor`, if no cut has been made since the request was
        sent; whether it did."""
        self.slow_start = False
        if ticket.generation != self.generation:
            return False
        self.window = max(self.settings.floor, self.window * factor)
        self.generation += 1
        return True

    def pause_until(self, until: float) -> float | None:
        """Moves the pause later (never earlier); the new end, or None if it did not move."""
        if until <= self.paused_until:
            return None
        self.paused_until = until
        return until

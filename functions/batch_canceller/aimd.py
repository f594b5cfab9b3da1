"""How many API requests one invocation keeps in flight, and until when it sends none: additive
increase, multiplicative decrease (AIMD) on 429s, and the pause a `Retry-After` asks for.

Pure: no threads, no clock of its own (every reading is passed in), no I/O. `api_pacing` holds
it under a lock; docs/rate-limits.md argues the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.ceiling:
            raise ValueError("the start window must be within 1..ceiling")
        if not 0 < self.decrease < 1 or self.increase <= 0 or self.growth_seconds <= 0:
            raise ValueError("decrease must be in (0, 1), increase and growth_seconds > 0")
        if not 0 < self.floor <= 1:
            raise ValueError("the floor must be within (0, 1]")


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
        self, ticket: Ticket, answer: Answer, now: float, retry_after: float | None = None
    ) -> Change:
        """The request's answer: the window grows, or is cut (once per generation), and a
        `retry_after` pauses every request until `now + retry_after`."""
        self.in_flight = max(0, self.in_flight - 1)
        if answer is Answer.ACCEPTED:
            sample = max(0.0, now - ticket.sent_at)
            self.rtt = sample if self.rtt is None else self.rtt + RTT_WEIGHT * (sample - self.rtt)
            step = min(self.settings.increase, self.rtt / self.settings.growth_seconds)
            grown = self.window + step / self.window
            self.window = min(float(self.settings.ceiling), grown)
            return Change()
        if answer is Answer.NEUTRAL:
            return Change()
        cut = ticket.generation == self.generation
        if cut:
            self.window = max(self.settings.floor, self.window * self.settings.decrease)
            self.generation += 1
        paused = self.pause_until(now + retry_after) if retry_after is not None else None
        return Change(cut, paused)

    def pause_until(self, until: float) -> float | None:
        """Moves the pause later (never earlier); the new end, or None if it did not move."""
        if until <= self.paused_until:
            return None
        self.paused_until = until
        return until

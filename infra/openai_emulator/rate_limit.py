"""A requests-per-second limit shared by every caller (a token bucket), answered like OpenAI's:
429 with `retry-after-ms` / `retry-after`, and `x-ratelimit-*` headers on every answer.

Off (no limit, no headers) unless a rate is set. Counters (requests, 429s, and per second:
requests, 429s, the most requests in flight at once) are kept while it is on or off, so a load
run can read what the API saw. Pure apart from the lock: the caller passes the clock readings.
"""

from __future__ import annotations

import heapq
import math
import threading
from dataclasses import dataclass
from typing import Any

from infra.openai_emulator.errors import ApiError

# Seconds of per-second counters kept (a load run of an hour fits).
KEPT_SECONDS = 3600
RATE_LIMIT_MESSAGE = (
    "Rate limit reached for requests in organization org-emulator on requests per second (RPS):"
    " Limit {limit}, Used {limit}, Requested 1. Please try again in {wait}."
)


@dataclass(frozen=True)
class Verdict:
    """What the bucket says of one request: let through or not, and the headers to send."""

    allowed: bool
    headers: dict[str, str]
    retry_after_seconds: float = 0.0


def duration(seconds: float) -> str:
    """A wait as OpenAI writes it in `x-ratelimit-reset-*`: `120ms`, `1s`, `6m0s`, `1.5s`."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{rest_text}" if minutes else rest_text


class TokenBucket:
    """`rate` requests a second, `burst` at once; `rate` None is off."""

    def __init__(self, rate: float | None = None, burst: float | None = None) -> None:
        self._lock = threading.Lock()
        self.rate: float | None = None
        self.burst = 1.0
        self._tokens = 1.0
        self._at: float | None = None
        self.requests = 0
        self.limited = 0
        # second -> [requests, 429s, most in flight]
        self._seconds: dict[int, list[int]] = {}
        self._answers_end: list[float] = []  # when each answer in flight is sent (monotonic)
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        """A new limit, with a full bucket; `burst` defaults to one second's worth (at least 1)."""
        if rate is not None and rate <= 0:
            raise ValueError("requests_per_second must be > 0, or null for no limit")
        if burst is not None and burst < 1:
            raise ValueError("burst must be >= 1")
        with self._lock:
            self.rate = rate
            self.burst = float(burst if burst is not None else max(1.0, math.floor(rate or 1.0)))
            self._tokens = self.burst
            self._at = None

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.limited = 0
            self._seconds.clear()

    def take(self, now: float, monotonic: float, answer_in: float) -> Verdict:
        """One API request arriving at `now` (wall clock), answered `answer_in` seconds later
        if let through (a 429 is answered at once)."""
        with self._lock:
            verdict = self._take(now)
            ends = monotonic + (answer_in if verdict.allowed else 0.0)
            in_flight = self._count_in_flight(monotonic, ends)
            self.requests += 1
            self.limited += not verdict.allowed
            second = self._seconds.setdefault(int(now), [0, 0, 0])
            second[0] += 1
            second[1] += not verdict.allowed
            second[2] = max(second[2], in_flight)
            if len(self._seconds) > KEPT_SECONDS:
                del self._seconds[min(self._seconds)]
            return verdict

    def _count_in_flight(self, monotonic: float, ends: float) -> int:
        answers = self._answers_end
        while answers and answers[0] <= monotonic:
            heapq.heappop(answers)
        heapq.heappush(answers, ends)
        return len(answers)

    def _take(self, now: float) -> Verdict:
        if self.rate is None:
            return Verdict(True, {})
        rate = self.rate
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * rate)
        self._at = now
        allowed = self._tokens >= 1.0
        if allowed:
            self._tokens -= 1.0
        headers = {
            "x-ratelimit-limit-requests": str(int(self.burst)),
            "x-ratelimit-remaining-requests": str(int(self._tokens)),
            "x-ratelimit-reset-requests": duration((self.burst - self._tokens) / rate),
        }
        if allowed:
            return Verdict(True, headers)
        wait = (1.0 - self._tokens) / rate
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        return Verdict(False, headers, wait)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enabled": self.rate is not None,
                "requests_per_second": self.rate,
                "burst": self.burst,
                "counts": {"requests": self.requests, "limited": self.limited},
                "per_second": [
                    {"second": s, "requests": c[0], "limited": c[1], "max_in_flight": c[2]}
                    for s, c in sorted(self._seconds.items())
                ],
            }


def rate_limited(verdict: Verdict, limit: int) -> ApiError:
    """OpenAI's 429 for a request over the limit, with the verdict's headers."""
    message = RATE_LIMIT_MESSAGE.format(limit=limit, wait=duration(verdict.retry_after_seconds))
    payload = {
        "error": {
            "message": message,
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    return ApiError(429, payload, verdict.headers)

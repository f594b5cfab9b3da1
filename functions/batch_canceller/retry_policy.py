"""When and how long to wait before retrying an API call."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A server asking for a longer wait than this is not waited for within one invocation; a paced
# client (api_pacing) pauses at most this long on one answer's word.
MAX_RETRY_AFTER_SECONDS = 60.0
# No hint is taken for longer than this (a day): `inf`, `1e12` or a date in year 9999 become
# a finite wait every caller can compare, add, round and store.
LONGEST_HINT_SECONDS = 86400.0
# A retry waits at least this: a hint of no wait (`0`, `-1`, a past date, `1` ms) retried at
# once by a client that retries 429s until its deadline would loop at network speed.
MIN_RETRY_WAIT_SECONDS = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    # A server asking for a longer wait than this is not waited for within one invocation.
    max_retry_after_seconds: float = MAX_RETRY_AFTER_SECONDS

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        ceiling = min(self.max_backoff_seconds, self.base_seconds * 2 ** min(attempt - 1, 32))
        return rng.uniform(0, ceiling)

    def retry_wait(self, hint: float | None, attempt: int, rng: random.Random) -> float:
        """The wait before retry number `attempt` after an answer hinting `hint`: the hint when
        it asks for one, else the backoff; never less than MIN_RETRY_WAIT_SECONDS."""
        wait = hint if hint is not None and hint > 0 else self.backoff(attempt, rng)
        return max(MIN_RETRY_WAIT_SECONDS, wait)


def is_retryable_status(status: int) -> bool:
    return status in (408, 425, 429) or 500 <= status <= 599


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The server's requested wait: `retry-after-ms`, else `retry-after` (seconds or HTTP date),
    within 0..LONGEST_HINT_SECONDS. `nan` is no number (ignored, as any garbage); `inf` is the
    longest wait there is, so it is LONGEST_HINT_SECONDS: no caller ever sees a non-finite."""
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None and (ms := _number(raw_ms)) is not None:
        return _bounded(ms / 1000.0)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    if (seconds := _number(raw)) is not None:
        return _bounded(seconds)
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _bounded((moment - (now or datetime.now(UTC))).total_seconds())


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _bounded(seconds: float) -> float:
    return min(LONGEST_HINT_SECONDS, max(0.0, seconds))

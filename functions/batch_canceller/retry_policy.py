"""When and how long to wait before retrying an API call."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    # A server asking for a longer wait than this is not waited for within one invocation.
    max_retry_after_seconds: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        ceiling = min(self.max_backoff_seconds, self.base_seconds * 2 ** min(attempt - 1, 32))
        return rng.uniform(0, ceiling)


def is_retryable_status(status: int) -> bool:
    return status in (408, 425, 429) or 500 <= status <= 599


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The server's requested wait: `retry-after-ms`, else `retry-after` (seconds or HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())

"""OpenAI's request-budget headers, read from any answer: `x-ratelimit-limit-requests`,
`x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests` (a Go-style duration:
`120ms`, `1s`, `1.5s`, `6m0s`). They describe the organisation's budget, spent by every
caller, so each answer tells an invocation what all the others are doing.

Pure. Garbage is no budget (None), never an exception; no value is negative, inf or nan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

LIMIT = "x-ratelimit-limit-requests"
REMAINING = "x-ratelimit-remaining-requests"
RESET = "x-ratelimit-reset-requests"

# A reset hint longer than a day is believed as a day (callers cap it further).
LONGEST_RESET_SECONDS = 86_400.0

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)", re.ASCII)


@dataclass(frozen=True)
class Budget:
    """What one answer says of the budget: `remaining` of `limit` requests, refilled to the
    limit in `reset_seconds` (None if the answer did not say, or said garbage)."""

    limit: int
    remaining: int
    reset_seconds: float | None = None

    @property
    def share_left(self) -> float:
        return self.remaining / self.limit


def budget(headers: Mapping[str, str]) -> Budget | None:
    """The budget the headers describe, or None without a usable limit and remaining."""
    lowered = {key.lower(): value for key, value in headers.items()}
    limit = _count(lowered.get(LIMIT))
    remaining = _count(lowered.get(REMAINING))
    if limit is None or remaining is None or limit < 1 or remaining > limit:
        return None
    raw_reset = lowered.get(RESET)
    return Budget(limit, remaining, duration_seconds(raw_reset) if raw_reset else None)


def duration_seconds(text: str) -> float | None:
    """`120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3.5s` (a bare number: seconds), within
    0..LONGEST_RESET_SECONDS; None for anything else."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _go_duration(text)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, LONGEST_RESET_SECONDS)


def _go_duration(text: str) -> float | None:
    total, at = 0.0, 0
    for part in _PART.finditer(text):
        if part.start() != at:
            return None  # something between the parts
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        at = part.end()
    return total if at == len(text) and at > 0 else None


def _count(raw: str | None) -> int | None:
    if raw is None:
        return None
    raw = raw.strip()
    # A whole count only: `10`, not `1e9`, `-1`, `nan` or a 400-digit number.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return None
    return int(raw)

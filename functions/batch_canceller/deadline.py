"""The invocation's time budget: work stops early enough to report what it could not finish."""

from __future__ import annotations

import time
from collections.abc import Callable

# Time kept back for writing results, publishing events and answering Lambda.
DEFAULT_RESERVE_SECONDS = 5.0
# What must be left of the invocation to start one more call and still answer Lambda.
FINISH_SECONDS = 1.5


class Deadline:
    def __init__(
        self,
        remaining_seconds: Callable[[], float],
        reserve_seconds: float = DEFAULT_RESERVE_SECONDS,
    ) -> None:
        self._remaining = remaining_seconds
        self._reserve = reserve_seconds

    @classmethod
    def from_context(
        cls, context: object, reserve_seconds: float = DEFAULT_RESERVE_SECONDS
    ) -> Deadline:
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if remaining_ms is None:
            # Without a Lambda context (scripts, the local stack) allow 15 minutes, Lambda's maximum.
            return cls.after(900.0, reserve_seconds)
        return cls(lambda: remaining_ms() / 1000.0, reserve_seconds)

    @classmethod
    def after(cls, seconds: float, reserve_seconds: float = DEFAULT_RESERVE_SECONDS) -> Deadline:
        end = time.monotonic() + seconds
        return cls(lambda: end - time.monotonic(), reserve_seconds)

    def keeping(self, seconds: float) -> Deadline:
        """The same deadline with `seconds` more kept back (for what comes after a phase)."""
        return Deadline(lambda: self._remaining() - seconds, self._reserve)

    def leaves(self, seconds: float) -> bool:
        """True if something taking `seconds` would still end before the deadline itself: the
        test for work that runs in the reserve (publishing events, answering)."""
        return self._remaining() > seconds

    def remaining_seconds(self) -> float:
        """Seconds until the invocation's deadline, when Lambda stops it."""
        return self._remaining()

    def usable_seconds(self) -> float:
        """Seconds left for API work, after the reserve."""
        return self._remaining() - self._reserve

    def allows(self, seconds: float) -> bool:
        """True if something taking `seconds` would still end before the reserve."""
        return self.usable_seconds() > seconds

    @property
    def expired(self) -> bool:
        return self.usable_seconds() <= 0

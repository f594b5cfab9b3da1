"""The Batch lifecycle as this service sees it: ordering, terminal states, and what to announce."""

from __future__ import annotations

from enum import StrEnum


class DetailType(StrEnum):
    CANCELLED = "Batch Cancelled"
    FINISHED_BEFORE_CANCEL = "Batch Finished Before Cancel"
    CANCEL_FAILED = "Batch Cancel Failed"
    CANCEL_STALLED = "Batch Cancel Stalled"
    SWEEP_COMPLETED = "Batch Sweep Completed"


TERMINAL = frozenset({"cancelled", "completed", "failed", "expired"})
FINISHED_OTHERWISE = frozenset({"completed", "failed", "expired"})

# Writes only move forward along this order; every terminal status shares the top rank,
# so the first terminal status stored is final.
_RANK = {
    "validating": 1,
    "in_progress": 2,
    "finalizing": 3,
    "cancelling": 4,
}
TERMINAL_RANK = 5
UNKNOWN_RANK = 0


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL


def rank(status: str) -> int:
    if status in TERMINAL:
        return TERMINAL_RANK
    return _RANK.get(status, UNKNOWN_RANK)


def announcement_for(status: str) -> DetailType | None:
    """The event a batch reaching `status` is announced with, if any."""
    if status == "cancelled":
        return DetailType.CANCELLED
    if status in FINISHED_OTHERWISE:
        return DetailType.FINISHED_BEFORE_CANCEL
    return None

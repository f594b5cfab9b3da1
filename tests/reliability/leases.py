"""Claims past their lease, read from the journals and the delivery logs: why each takeover
happened (what became of the delivery whose claim lapsed), and, for each event a PutEvents may
have published that its publisher did not mark announced (the outcome was not known, or the
publisher died, its mark failed or it had no time left), whether its receipt marked it before
the lease ended.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.reliability import announce_journal as journal
from tests.reliability.deliveries import Invocation

KILLED = "its invocation was SIGKILLed"
TIMED_OUT = "its invocation was stopped at its deadline"
UNKNOWN = "its PutEvents outcome was not known, and no receipt came"
OTHER = "its delivery failed after claiming, before publishing"
UNTRACED = "its delivery is not in the logs"
CAUSES = (KILLED, TIMED_OUT, UNKNOWN, OTHER, UNTRACED)


@dataclass
class Takeovers:
    causes: Counter[str] = field(default_factory=Counter)
    # Seconds between the lapsed claim's lease end and the takeover: never negative.
    past_lease: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.causes.values())

    def describe(self) -> str:
        if not self.past_lease:
            return "no claim was taken over"
        late = sorted(self.past_lease)
        return (
            f"claims taken over {late[0]:.1f} s to {late[-1]:.1f} s after their lease ended"
            f" (median {statistics.median(late):.1f} s)"
        )


@dataclass
class Fates:
    """Events that may be out although their publisher did not mark them announced: what
    marked them in the end."""

    total: int = 0
    by_receipt: int = 0  # marked announced by a receipt (or a mark by someone else)
    taken_over: int = 0  # the lease ended first; another delivery claimed the event
    open: int = 0  # no later mark seen (a SIGKILL can cut the journal line of its own mark)


@dataclass
class UnmarkedEvents:
    # PutEvents outcome not known; accepted, and then the publisher died, its mark failed or it
    # left the mark to the receipt (no time left).
    unknown: Fates = field(default_factory=Fates)
    orphaned: Fates = field(default_factory=Fates)
    # Lease end minus the receipt's mark, for every event a receipt marked: the grace's margin.
    margins: list[float] = field(default_factory=list)

    def describe(self) -> str:
        if not self.margins:
            return "no receipt had to mark an event its publisher left unmarked"
        late = sum(margin < 0 for margin in self.margins)
        return (
            f"receipts marked {len(self.margins)} event(s) their publisher left unmarked"
            f" {min(self.margins):.1f} s to {max(self.margins):.1f} s before the lease ended"
            f" (median {statistics.median(self.margins):.1f} s); {late} later than the lease"
            " (a redelivery taking the claim over before such a receipt publishes again)"
        )


def takeovers(
    journals: dict[int, list[journal.Entry]],
    invocations: Iterable[Invocation],
    killed: set[int],
) -> Takeovers:
    """Each TAKEN_OVER line, by what became of the delivery whose claim it took."""
    by_nonce = {invocation.nonce: invocation for invocation in invocations}
    found = Takeovers()
    for entries in journals.values():
        for entry in entries:
            if entry.step != journal.TAKEN_OVER:
                continue
            token, expires = entry.extra[0], float(entry.extra[1])
            found.past_lease.append(entry.at - expires)
            holder = by_nonce.get(token.rpartition("/")[2])
            found.causes[_cause(entry.key, holder, journals, killed)] += 1
    return found


def _cause(
    key: tuple[str, str],
    holder: Invocation | None,
    journals: dict[int, list[journal.Entry]],
    killed: set[int],
) -> str:
    if holder is None:
        return UNTRACED
    if holder.timed_out:
        return TIMED_OUT
    if holder.ended is None and holder.incarnation in killed:
        return KILLED
    end = holder.ended if holder.ended is not None else float("inf")
    steps = {
        e.step
        for e in journals.get(holder.incarnation, [])
        if e.key == key and holder.began <= e.at <= end
    }
    return UNKNOWN if journal.UNKNOWN in steps else OTHER


def unmarked_events(journals: dict[int, list[journal.Entry]]) -> UnmarkedEvents:
    """Each event a PutEvents may have published that its publisher did not mark announced (the
    outcome was not known, or it was accepted and the publisher died or its mark failed): did
    a receipt mark it before the lease of the claim it was sent under ended, or did another
    delivery take the claim over first?"""
    later: dict[tuple[str, str], list[journal.Entry]] = {}
    for entries in journals.values():
        for entry in entries:
            if entry.step in (journal.MARKED, journal.TAKEN_OVER):
                later.setdefault(entry.key, []).append(entry)
    for marks in later.values():
        marks.sort(key=lambda e: e.at)
    found = UnmarkedEvents()
    for entries in journals.values():
        for entry, lease, fates in _unmarked(entries, found):
            fates.total += 1
            after = next((e for e in later.get(entry.key, []) if e.at >= entry.at), None)
            if after is None:
                fates.open += 1
            elif after.step == journal.TAKEN_OVER:
                fates.taken_over += 1
            else:
                fates.by_receipt += 1
                if lease is not None:
                    found.margins.append(lease - after.at)
    return found


def _unmarked(
    entries: list[journal.Entry], found: UnmarkedEvents
) -> list[tuple[journal.Entry, float | None, Fates]]:
    """One worker's events left unmarked by it: (the entry, the lease, which kind)."""
    lease: dict[tuple[str, str], float] = {}
    accepted: dict[tuple[str, str], journal.Entry] = {}
    unmarked: list[tuple[journal.Entry, float | None, Fates]] = []
    for entry in entries:
        if entry.step == journal.PUBLISHING and entry.extra and entry.extra[0] != "-":
            lease[entry.key] = float(entry.extra[0])
        elif entry.step == journal.UNKNOWN:
            unmarked.append((entry, lease.get(entry.key), found.unknown))
        elif entry.step == journal.PUBLISHED:
            accepted[entry.key] = entry
        elif entry.step == journal.MARKED:
            accepted.pop(entry.key, None)
    unmarked += [(entry, lease.get(key), found.orphaned) for key, entry in accepted.items()]
    return unmarked

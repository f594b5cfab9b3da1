"""A journal of the function's announcements, to trace a duplicate event to its cause.

An event is owed in the record (`pending_events`), sent with PutEvents, then marked announced
in the record. A SIGKILL after PutEvents and before that mark leaves it owed, and the next
delivery announces it again: the window at-least-once delivery leaves open. The worker wraps
the two calls (observing them, changing nothing) and appends one line per step to
`journal-<incarnation>.tsv`; appends survive a SIGKILL because they are already in the kernel.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUBLISHING = "publishing"  # in a PutEvents request about to be sent
PUBLISHED = "published"  # accepted by PutEvents
REJECTED = "rejected"  # refused: still owed, nothing went out
UNKNOWN = "unknown"  # timed out or dropped: maybe out, still owed under its claim
MARKED = "marked"  # the record says announced
MARK_FAILED = "mark_failed"  # the DynamoDB write failed after the event went out


def journal_path(state_dir: Path, incarnation: int) -> Path:
    return state_dir / f"journal-{incarnation}.tsv"


def install(path: Path) -> None:
    """Wrap PutEvents (EventPublisher.put, one request) and EventLedger.mark_announced."""
    from batch_canceller.announce_protocol import PutOutcome
    from batch_canceller.announcer import Announcement, EventPublisher
    from batch_canceller.event_ledger import EventLedger

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()

    def note(step: str, keys: Iterable[tuple[str, str]]) -> None:
        now = f"{time.time():.3f}"
        lines = "".join(f"{now}\t{step}\t{batch}\t{kind}\n" for batch, kind in keys)
        if lines:
            with lock:
                os.write(fd, lines.encode())

    put = EventPublisher.put
    mark_announced = EventLedger.mark_announced

    def journaled_put(self: EventPublisher, chunk: Sequence[Announcement]) -> list[PutOutcome]:
        # One PutEvents request (ten entries at most): the events it may deliver.
        keys = [(a.batch_id, a.detail_type) for a in chunk]
        note(PUBLISHING, keys)
        outcomes = put(self, chunk)
        pairs = list(zip(keys, outcomes, strict=True))
        note(PUBLISHED, (key for key, o in pairs if o is PutOutcome.ACCEPTED))
        note(UNKNOWN, (key for key, o in pairs if o is PutOutcome.UNKNOWN))
        note(REJECTED, (key for key, o in pairs if o is PutOutcome.REFUSED))
        return outcomes

    def journaled_mark(self: EventLedger, batch_id: str, detail_type: str) -> Any:
        try:
            result = mark_announced(self, batch_id, detail_type)
        except BaseException:
            note(MARK_FAILED, [(batch_id, detail_type)])
            raise
        note(MARKED, [(batch_id, detail_type)])
        return result

    EventPublisher.put = journaled_put  # type: ignore[method-assign]
    EventLedger.mark_announced = journaled_mark  # type: ignore[method-assign]


@dataclass(frozen=True)
class Entry:
    at: float
    step: str
    batch_id: str
    detail_type: str


def read(path: Path) -> list[Entry]:
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 4:  # a SIGKILL can cut the very last line short
            entries.append(Entry(float(parts[0]), parts[1], parts[2], parts[3]))
    return entries


def in_window(entries: Iterable[Entry]) -> dict[tuple[str, str], Entry]:
    """Events that went (or may be going) out and are not marked announced yet: what a
    SIGKILL right now would leave owed although EventBridge has them."""
    open_keys: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        key = (entry.batch_id, entry.detail_type)
        if entry.step == PUBLISHING:
            open_keys.setdefault(key, entry)
        elif entry.step in (REJECTED, MARKED, MARK_FAILED):
            open_keys.pop(key, None)
    return open_keys


def published(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    return {(e.batch_id, e.detail_type) for e in entries if e.step == PUBLISHED}


def failed_marks(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    return {(e.batch_id, e.detail_type) for e in entries if e.step == MARK_FAILED}

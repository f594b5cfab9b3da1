"""A journal of the function's announcements, to trace a duplicate event to its cause.

An event is owed in the record (`pending_events`) under a claim, sent with PutEvents, then
marked announced in the record (by its publisher, or by its receipt). The worker wraps the calls
(observing them, changing nothing) and appends one line per step to `journal-<incarnation>.tsv`:
`time, step, batch ID, detail type[, extra...]`. Appends survive a SIGKILL because they are
already in the kernel. Extra fields: a PUBLISHING line carries the lease of the invocation's
claims (epoch seconds); a TAKEN_OVER line the token and lease end of the lapsed claim it took.
"""

from __future__ import annotations

import inspect
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
TAKEN_OVER = "taken_over"  # a claim write won over another delivery's lapsed claim
# Fields a line of each step has (a SIGKILL can cut the very last line short).
_FIELDS = {PUBLISHING: 5, TAKEN_OVER: 6}


def journal_path(state_dir: Path, incarnation: int) -> Path:
    return state_dir / f"journal-{incarnation}.tsv"


def install(path: Path) -> None:
    """Wrap PutEvents (EventPublisher.put, one request), EventLedger.mark_announced, and the
    announcer's claim step (to see takeovers) and its entry point (to learn the lease)."""
    from batch_canceller.announce_protocol import Decision, PutOutcome, Step
    from batch_canceller.announcer import Announcement, EventPublisher
    from batch_canceller.announcing import Announcer, OwedEvent
    from batch_canceller.event_ledger import EventLedger

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()
    # One invocation at a time per worker process: the lease its claims carry.
    current = {"lease": "-"}

    def note(step: str, keys: Iterable[tuple[str, str]], *extra: str) -> None:
        now = f"{time.time():.3f}"
        tail = "".join(f"\t{field}" for field in extra)
        lines = "".join(f"{now}\t{step}\t{batch}\t{kind}{tail}\n" for batch, kind in keys)
        if lines:
            with lock:
                os.write(fd, lines.encode())

    put = EventPublisher.put
    mark_announced = EventLedger.mark_announced
    announce = Announcer.announce
    claim = Announcer._claim

    def journaled_put(self: EventPublisher, chunk: Sequence[Announcement]) -> list[PutOutcome]:
        # One PutEvents request (ten entries at most): the events it may deliver.
        keys = [(a.batch_id, a.detail_type) for a in chunk]
        note(PUBLISHING, keys, current["lease"])
        outcomes = put(self, chunk)
        pairs = list(zip(keys, outcomes, strict=True))
        note(PUBLISHED, (key for key, o in pairs if o is PutOutcome.ACCEPTED))
        note(UNKNOWN, (key for key, o in pairs if o is PutOutcome.UNKNOWN))
        note(REJECTED, (key for key, o in pairs if o is PutOutcome.REFUSED))
        return outcomes

    def journaled_mark(
        self: EventLedger, batch_id: str, detail_type: str, *args: Any, **kwargs: Any
    ) -> Any:
        try:
            result = mark_announced(self, batch_id, detail_type, *args, **kwargs)
        except BaseException:
            note(MARK_FAILED, [(batch_id, detail_type)])
            raise
        note(MARKED, [(batch_id, detail_type)])
        return result

    # By name, whatever else these take (the function's internals move; the journal follows).
    announce_params = inspect.signature(announce)
    claim_params = inspect.signature(claim)

    def journaled_announce(self: Announcer, *args: Any, **kwargs: Any) -> Any:
        lease = announce_params.bind(self, *args, **kwargs).arguments["lease"]
        current["lease"] = f"{lease:.3f}"
        return announce(self, *args, **kwargs)

    def journaled_claim(self: Announcer, *args: Any, **kwargs: Any) -> Any:
        event: OwedEvent = claim_params.bind(self, *args, **kwargs).arguments["event"]
        result = claim(self, *args, **kwargs)
        previous = event.ledger.claim
        # As the function's ClaimsTakenOver metric counts: won, over a claim the record held.
        if previous is not None and isinstance(result, Decision) and result.step is Step.PUBLISH:
            note(TAKEN_OVER, [event.key], previous.token, f"{previous.expires:.3f}")
        return result

    EventPublisher.put = journaled_put  # type: ignore[method-assign]
    EventLedger.mark_announced = journaled_mark  # type: ignore[method-assign]
    Announcer.announce = journaled_announce  # type: ignore[method-assign]
    Announcer._claim = journaled_claim  # type: ignore[method-assign]


@dataclass(frozen=True)
class Entry:
    at: float
    step: str
    batch_id: str
    detail_type: str
    extra: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.batch_id, self.detail_type)


def read(path: Path) -> list[Entry]:
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 4 and len(parts) == _FIELDS.get(parts[1], 4):
            entries.append(Entry(float(parts[0]), parts[1], parts[2], parts[3], tuple(parts[4:])))
    return entries


def read_all(state_dir: Path) -> dict[int, list[Entry]]:
    """Every incarnation's journal, by incarnation."""
    return {
        int(path.stem.removeprefix("journal-")): read(path)
        for path in state_dir.glob("journal-*.tsv")
    }


def since(entries: Iterable[Entry], at: float) -> list[Entry]:
    """The entries from `at` on (an invocation's, when `at` is when it began)."""
    return [entry for entry in entries if entry.at >= at]


def in_window(entries: Iterable[Entry]) -> dict[tuple[str, str], Entry]:
    """Events that went (or may be going) out and are not marked announced yet: what a
    SIGKILL right now would leave owed although EventBridge may have them. An event whose
    outcome came back unknown has left the window: its publisher would not mark it anyway
    (its receipt does), so a kill changes nothing for it."""
    open_keys: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        if entry.step == PUBLISHING:
            open_keys.setdefault(entry.key, entry)
        elif entry.step in (REJECTED, UNKNOWN, MARKED, MARK_FAILED):
            open_keys.pop(entry.key, None)
    return open_keys


def accepted_unmarked(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    """Events PutEvents accepted that are not marked announced yet: the window proper (of the
    invocation running now, given its entries; a publisher short of time leaves the mark to the
    receipt, so earlier ones can stay unmarked for good)."""
    open_keys: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.step == PUBLISHED:
            open_keys.add(entry.key)
        elif entry.step in (MARKED, MARK_FAILED):
            open_keys.discard(entry.key)
    return open_keys


def published(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    return {e.key for e in entries if e.step == PUBLISHED}


def failed_marks(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    return {e.key for e in entries if e.step == MARK_FAILED}

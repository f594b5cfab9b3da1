"""Which invocation handled which message, and when: to find concurrent copies and to name the
delivery behind a claim token.

The worker appends `deliveries-<incarnation>.tsv` (appends survive a SIGKILL): per invocation
one `begin` line per message, as the function draws the invocation's nonce, and one `end` (or
`timeout`, when the worker stops the invocation at its deadline as Lambda would) line.
`time, step, nonce[, message ID]`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BEGIN = "begin"
END = "end"
TIMEOUT = "timeout"


def deliveries_path(state_dir: Path, incarnation: int) -> Path:
    return state_dir / f"deliveries-{incarnation}.tsv"


class DeliveryLog:
    """The worker's side: one file per incarnation, appended whole lines at a time."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def begin(self, nonce: str, message_ids: Iterable[str]) -> None:
        now = f"{time.time():.3f}"
        self._write("".join(f"{now}\t{BEGIN}\t{nonce}\t{mid}\n" for mid in message_ids))

    def end(self, nonce: str, step: str = END) -> None:
        self._write(f"{time.time():.3f}\t{step}\t{nonce}\n")

    def _write(self, text: str) -> None:
        with self._lock:
            os.write(self._fd, text.encode())


def last_begin(state_dir: Path, incarnation: int) -> float:
    """When the incarnation's latest invocation began (0.0: none yet)."""
    try:
        text = deliveries_path(state_dir, incarnation).read_text()
    except FileNotFoundError:
        return 0.0
    for line in reversed(text.splitlines()):
        parts = line.split("\t")
        if len(parts) == 4 and parts[1] == BEGIN:
            return float(parts[0])
    return 0.0


@dataclass
class Invocation:
    incarnation: int
    nonce: str
    began: float
    message_ids: list[str]
    ended: float | None = None  # None: it died (SIGKILL) before it ended
    timed_out: bool = False

    def until(self, died_at: float | None, timeout: float) -> float:
        """When it stopped: its end, its process's death, or at the latest its deadline."""
        if self.ended is not None:
            return self.ended
        latest = self.began + timeout
        return latest if died_at is None else min(died_at, latest)


def read_invocations(state_dir: Path) -> list[Invocation]:
    found: dict[str, Invocation] = {}
    for path in sorted(state_dir.glob("deliveries-*.tsv")):
        incarnation = int(path.stem.removeprefix("deliveries-"))
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 3:
                continue  # cut short by a SIGKILL
            at, step, nonce = float(parts[0]), parts[1], parts[2]
            if step == BEGIN and len(parts) == 4:
                invocation = found.setdefault(nonce, Invocation(incarnation, nonce, at, []))
                invocation.message_ids.append(parts[3])
            elif step in (END, TIMEOUT) and nonce in found:
                found[nonce].ended = at
                found[nonce].timed_out = step == TIMEOUT
    return sorted(found.values(), key=lambda invocation: invocation.began)


@dataclass(frozen=True)
class Overlaps:
    messages: int  # messages handled by two invocations at the same time at least once
    pairs: int  # pairs of invocations that handled one message at the same time


def concurrent_copies(
    invocations: Iterable[Invocation], deaths: dict[int, float], timeout: float
) -> Overlaps:
    """`deaths`: incarnation -> when it was killed (epoch seconds)."""
    by_message: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for invocation in invocations:
        span = (invocation.began, invocation.until(deaths.get(invocation.incarnation), timeout))
        for message_id in set(invocation.message_ids):
            by_message[message_id].append(span)
    messages = pairs = 0
    for spans in by_message.values():
        if len(spans) < 2:
            continue
        spans.sort()
        overlapping = sum(
            1
            for i, (_, first_end) in enumerate(spans)
            for later_start, _ in spans[i + 1 :]
            if later_start < first_end
        )
        messages += overlapping > 0
        pairs += overlapping
    return Overlaps(messages, pairs)

"""Batch objects and their lifecycle, computed lazily from the clock on every read.

A state change to a terminal status is reported to `on_terminal` (the webhook sender) when
it happens: `advance_due()`, called by the emulator's lifecycle thread, applies each pending
cancel at its due time even when nobody reads the batch."""

from __future__ import annotations

import copy
import heapq
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.openai_emulator.batch_object import new_batch
from infra.openai_emulator.errors import not_found, openai_error

CANCELLABLE_STATUSES = frozenset({"validating", "in_progress", "finalizing"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
BATCH_STATUSES = CANCELLABLE_STATUSES | TERMINAL_STATUSES | {"cancelling"}

# Told (under the store's lock: it must not block) batch ID, new status and the exact time.
TerminalListener = Callable[[str, str, float], None]

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 1, 100, 20


# The endpoints CreateBatchRequest allows in the official spec.
BATCH_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


@dataclass
class _Record:
    batch: dict[str, Any]
    delay_override: float | None
    # Exact clock reading and delay captured at cancel time: the Batch only carries
    # whole seconds, and changing the emulator's delay later must not move old cancels.
    cancel_started: float | None = None
    cancel_delay: float = 0.0
    # A cancel accepted but not yet in effect (`cancel_lag_seconds`): when it takes effect.
    cancel_takes_effect: float | None = None


class BatchStore:
    """All batches; every method takes the shared lock, none of them sleeps."""

    def __init__(
        self,
        clock: Callable[[], float],
        cancel_delay_seconds: float,
        lock: threading.Lock | None = None,
    ) -> None:
        self._clock = clock
        self.cancel_delay_seconds = cancel_delay_seconds
        # None: a cancel takes effect when it is answered (`cancelling`). A number: like some
        # compatible gateways, the cancel is answered with the batch as it was (its status
        # unchanged) and takes effect this many seconds later.
        self.cancel_lag_seconds: float | None = None
        self._lock = lock or threading.Lock()
        self._records: dict[str, _Record] = {}
        self.on_terminal: TerminalListener | None = None
        # (when, batch ID): moments a pending cancel changes a batch's status; `wake` is set
        # whenever one is added, so the lifecycle thread re-reads the earliest.
        self._due: list[tuple[float, str]] = []
        self.wake = threading.Event()

    def seed(
        self,
        batch_id: str | None = None,
        status: str = "in_progress",
        created_at: int | None = None,
        metadata: dict[str, str] | None = None,
        endpoint: str = "/v1/chat/completions",
        model: str | None = None,
        cancel_delay_seconds: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if status not in BATCH_STATUSES:
            raise ValueError(f"unknown batch status {status!r}")
        if batch_id is None and isinstance(extra.get("id"), str):
            batch_id = extra.pop("id")
        extra.pop("id", None)
        with self._lock:
            now = self._clock()
            batch = new_batch(
                batch_id or new_batch_id(),
                status,
                int(now) if created_at is None else int(created_at),
                metadata,
                endpoint,
                model or DEFAULT_MODEL,
            )
            batch.update(extra)  # verbatim, so tests can add future or odd-typed fields
            record = _Record(batch, cancel_delay_seconds)
            if status == "cancelling":
                record.cancel_started = now
                record.cancel_delay = self._delay_for(record)
                batch["cancelling_at"] = int(now)
                self._schedule(now + record.cancel_delay, batch["id"])
            self._records[batch["id"]] = record  # re-seeding an id replaces it
            return self._view(record, now)

    def create(self, body: Any) -> dict[str, Any]:
        """`POST /batches`: a new batch in `validating` (it stays there; nothing runs)."""
        if not isinstance(body, dict):
            raise openai_error(400, "The request body must be a JSON object.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                raise openai_error(
                    400, f"Missing required parameter: '{name}'.", param=name, code="missing"
                )
        if body["endpoint"] not in BATCH_ENDPOINTS:
            raise openai_error(
                400,
                f"Invalid 'endpoint': expected one of {', '.join(sorted(BATCH_ENDPOINTS))}.",
                param="endpoint",
                code="invalid_value",
            )
        if body["completion_window"] != "24h":
            raise openai_error(
                400,
                "Invalid 'completion_window': expected '24h'.",
                param="completion_window",
                code="invalid_value",
            )
        metadata = body.get("metadata")
        return self.seed(
            status="validating",
            endpoint=body["endpoint"],
            metadata=metadata if isinstance(metadata, dict) else None,
            input_file_id=body["input_file_id"],
        )

    def get(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(batch_id)
            return None if record is None else self._view(record, self._clock())

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self._clock()
            return [self._view(r, now) for r in self._sorted()]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._due.clear()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            record, now = self._current(batch_id)
            status = record.batch["status"]
            if status in TERMINAL_STATUSES:
                raise openai_error(409, f"Cannot cancel a batch with status '{status}'.")
            if status in CANCELLABLE_STATUSES and self.cancel_lag_seconds is not None:
                answer = self._view(record, now)
                if record.cancel_takes_effect is None:
                    record.cancel_takes_effect = now + self.cancel_lag_seconds
                    self._schedule(record.cancel_takes_effect, batch_id)
                    self._advance(record, now)
                return answer
            if status in CANCELLABLE_STATUSES:
                record.cancel_started = now
                record.cancel_delay = self._delay_for(record)
                record.batch["status"] = "cancelling"
                record.batch["cancelling_at"] = int(now)
                self._schedule(now + record.cancel_delay, batch_id)
            # Already `cancelling`: answered with the current object, like the real API.
            return self._view(record, now)

    def finish(self, batch_id: str, status: str) -> dict[str, Any]:
        """Move a batch that is not terminal to a terminal status now (as OpenAI would on its
        own: completed, failed, expired; or cancelled), with that status's timestamp."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(TERMINAL_STATUSES)}")
        with self._lock:
            record, now = self._current(batch_id)
            current = record.batch["status"]
            if current in TERMINAL_STATUSES:
                raise openai_error(409, f"The batch is already '{current}'.")
            record.cancel_started = record.cancel_takes_effect = None
            record.batch["status"] = status
            record.batch[f"{status}_at"] = int(now)
            if status == "completed":
                record.batch["finalizing_at"] = record.batch["finalizing_at"] or int(now)
            self._terminal(batch_id, status, now)
            return self._view(record, now)

    def advance_due(self) -> float | None:
        """Apply every status change due by now; the time of the next one, if any."""
        with self._lock:
            now = self._clock()
            while self._due and self._due[0][0] <= now:
                _, batch_id = heapq.heappop(self._due)
                record = self._records.get(batch_id)
                if record is not None:
                    self._advance(record, now)
            return self._due[0][0] if self._due else None

    def list_page(self, after: str | None, limit_text: str | None) -> dict[str, Any]:
        limit = _parse_limit(limit_text)
        with self._lock:
            now = self._clock()
            ordered = self._sorted()
            start = 0
            if after:
                ids = [r.batch["id"] for r in ordered]
                # An unknown cursor pages past the end: an empty page, not an error.
                start = ids.index(after) + 1 if after in ids else len(ids)
            page = [self._view(r, now) for r in ordered[start : start + limit]]
            return {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": start + limit < len(ordered),
            }

    def _sorted(self) -> list[_Record]:
        # Newest first; equal created_at falls back to id so pages are stable.
        return sorted(
            self._records.values(),
            key=lambda r: (r.batch["created_at"], r.batch["id"]),
            reverse=True,
        )

    def _delay_for(self, record: _Record) -> float:
        if record.delay_override is not None:
            return record.delay_override
        return self.cancel_delay_seconds

    def _current(self, batch_id: str) -> tuple[_Record, float]:
        """The batch's record advanced to now, and now (the caller holds the lock)."""
        record = self._records.get(batch_id)
        if record is None:
            raise not_found(batch_id)
        now = self._clock()
        self._advance(record, now)
        return record, now

    def _advance(self, record: _Record, now: float) -> None:
        batch = record.batch
        effect = record.cancel_takes_effect
        if effect is not None and now >= effect and batch["status"] in CANCELLABLE_STATUSES:
            record.cancel_takes_effect = None
            record.cancel_started = effect
            record.cancel_delay = self._delay_for(record)
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(effect)
            self._schedule(effect + record.cancel_delay, batch["id"])
        if batch["status"] != "cancelling" or record.cancel_started is None:
            return
        finished = record.cancel_started + record.cancel_delay
        if now >= finished:
            batch["status"] = "cancelled"
            batch["cancelled_at"] = int(finished)
            record.cancel_started = None  # applied once: later reads change nothing
            self._terminal(batch["id"], "cancelled", finished)

    def _schedule(self, when: float, batch_id: str) -> None:
        heapq.heappush(self._due, (when, batch_id))
        self.wake.set()

    def _terminal(self, batch_id: str, status: str, at: float) -> None:
        if self.on_terminal is not None:
            self.on_terminal(batch_id, status, at)

    def _view(self, record: _Record, now: float) -> dict[str, Any]:
        self._advance(record, now)
        return copy.deepcopy(record.batch)


def _parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise openai_error(
            400,
            f"Invalid 'limit': expected an integer, but got '{text}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if limit < MIN_LIMIT:
        raise openai_error(
            400,
            "Invalid 'limit': integer below minimum value. "
            f"Expected a value >= {MIN_LIMIT}, but got {limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > MAX_LIMIT:
        raise openai_error(
            400,
            "Invalid 'limit': integer above maximum value. "
            f"Expected a value <= {MAX_LIMIT}, but got {limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    return limit

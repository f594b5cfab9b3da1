"""Input models: every entry point's payload becomes one of these, or an InvalidInput."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batch_canceller.statuses import DetailType

BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_BATCH_IDS = 1000
MAX_BODY_BYTES = 512 * 1024
MAX_TEXT_FIELD = 1024
SWEEP_FILTERS = frozenset(
    {"older_than_minutes", "metadata", "endpoint", "model", "statuses", "dry_run", "max_cancels"}
)
# The events a record owes and marks announced; the bus sends each back as a receipt.
RECEIPTED_DETAIL_TYPES = frozenset(t.value for t in DetailType) - {DetailType.SWEEP_COMPLETED}
CANCEL_REQUESTED = "Batch Cancel Requested"


class InvalidInput(ValueError):
    """Permanently invalid input: retrying cannot help, so it goes to the DLQ with this reason."""


@dataclass(frozen=True)
class CancelCommand:
    batch_ids: tuple[str, ...]
    reason: str | None = None
    requested_by: str | None = None
    cancel_at: datetime | None = None


@dataclass(frozen=True)
class StatusCheck:
    """An internal follow-up: look at a `cancelling` batch again (sent by the function itself)."""

    batch_id: str
    watch_id: str
    attempt: int
    since: datetime
    # Drawn by whoever sends the check: one token wins each step of the chain.
    step: str = ""

    def to_message(self) -> dict[str, Any]:
        return {
            "check": {
                "batch_id": self.batch_id,
                "watch_id": self.watch_id,
                "attempt": self.attempt,
                "since": self.since.isoformat(),
                "step": self.step,
            }
        }


NON_TERMINAL_STATUSES = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
MAX_SWEEP_CANCELS = 100_000


@dataclass(frozen=True)
class SweepRequest:
    """Cancel every non-terminal batch that matches all the given filters."""

    older_than_minutes: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    endpoint: str | None = None
    model: str | None = None
    statuses: frozenset[str] | None = None
    dry_run: bool = False
    max_cancels: int | None = None

    def describe(self) -> dict[str, Any]:
        """The policy as given, for logs, summaries and the cancel reason."""
        described: dict[str, Any] = {
            "older_than_minutes": self.older_than_minutes,
            "metadata": dict(self.metadata) or None,
            "endpoint": self.endpoint,
            "model": self.model,
            "statuses": sorted(self.statuses) if self.statuses is not None else None,
            "max_cancels": self.max_cancels,
        }
        return {key: value for key, value in described.items() if value is not None}


@dataclass(frozen=True)
class PublicationReceipt:
    """One of the function's own events, delivered back to the queue by the bus: proof that it
    was published, even when the publisher died before marking it announced."""

    batch_id: str
    detail_type: str
    source: str
    # When the bus took the event (its `time`): how long a receipt is still worth retrying.
    published_at: datetime | None = field(default=None, compare=False)


MAX_RECONCILE_RECORDS = 10_000


@dataclass(frozen=True)
class ReconcileRequest:
    """Requeue the follow-through of records no queue message will touch again (sent by the
    reconcile schedule; it only sends status checks, so a stray one is harmless)."""

    max_records: int = 1000


Request = CancelCommand | StatusCheck | SweepRequest | PublicationReceipt | ReconcileRequest


def parse_message_body(body: str) -> Request:
    """An SQS body: JSON (a command, sweep or check) or a bare batch ID."""
    if len(body.encode("utf-8", errors="surrogatepass")) > MAX_BODY_BYTES:
        raise InvalidInput(f"message body is larger than {MAX_BODY_BYTES} bytes")
    text = body.strip()
    if not text.startswith(("{", "[", '"')):
        # Not JSON-shaped: a bare batch ID, as sent by `aws sqs send-message --message-body ID`.
        return CancelCommand(batch_ids=(validate_batch_id(text),))
    try:
        payload = json.loads(text)
    except RecursionError:
        raise InvalidInput("message body is JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput(f"message body is not valid JSON: {exc}") from None
    if isinstance(payload, str):
        return CancelCommand(batch_ids=(validate_batch_id(payload),))
    if isinstance(payload, dict) and {"detail-type", "source", "detail"} <= payload.keys():
        return _parse_event(payload)
    return parse_payload(payload)


def parse_payload(payload: object) -> Request:
    """A JSON object: an SQS body, an EventBridge `detail`, or a direct invoke payload."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {_json_type(payload)}")
    if "check" in payload:
        return _parse_check(payload)
    if "sweep" in payload:
        return _parse_sweep(payload)
    if "reconcile" in payload:
        return _parse_reconcile(payload)
    return _parse_command(payload)


def validate_batch_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"a batch ID must be a string, got {_json_type(value)}")
    if not BATCH_ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid batch ID {_preview(value)}: expected 1-256 characters of A-Z a-z 0-9 _ -"
        )
    return value


def _parse_event(envelope: dict[str, Any]) -> Request:
    """An EventBridge event a rule delivered to the queue: a receipt of one of the function's
    own events, or a `Batch Cancel Requested` routed through SQS."""
    detail_type, source, detail = envelope["detail-type"], envelope["source"], envelope["detail"]
    if detail_type == CANCEL_REQUESTED:
        if not isinstance(detail, dict) or "check" in detail or "reconcile" in detail:
            raise InvalidInput(f"the detail of {CANCEL_REQUESTED!r} must be a command or sweep")
        return parse_payload(detail)
    if detail_type not in RECEIPTED_DETAIL_TYPES:
        raise InvalidInput(
            f"unsupported detail-type {_preview(str(detail_type))} in an event on the queue;"
            f" expected {CANCEL_REQUESTED!r} or one of the function's own events"
        )
    if not isinstance(source, str) or not source:
        raise InvalidInput("an event on the queue needs a non-empty 'source'")
    if not isinstance(detail, dict):
        raise InvalidInput(f"the detail of {detail_type!r} must be an object")
    return PublicationReceipt(
        validate_batch_id(detail.get("batch_id")),
        detail_type,
        source,
        _event_time(envelope.get("time")),
    )


def _parse_command(payload: dict[str, Any]) -> CancelCommand:
    allowed = {"batch_id", "batch_ids", "reason", "requested_by", "cancel_at"}
    _reject_unknown(payload, allowed, "command")
    if ("batch_id" in payload) == ("batch_ids" in payload):
        raise InvalidInput("a command needs exactly one of 'batch_id' or 'batch_ids'")
    if "batch_id" in payload:
        ids: tuple[str, ...] = (validate_batch_id(payload["batch_id"]),)
    else:
        raw_ids = payload["batch_ids"]
        if not isinstance(raw_ids, list):
            raise InvalidInput(f"'batch_ids' must be a list, got {_json_type(raw_ids)}")
        if not raw_ids:
            raise InvalidInput("'batch_ids' is empty")
        if len(raw_ids) > MAX_BATCH_IDS:
            raise InvalidInput(
                f"'batch_ids' has {len(raw_ids)} entries; at most {MAX_BATCH_IDS} are allowed"
            )
        # Duplicates in one command are one cancel each, not two.
        ids = tuple(dict.fromkeys(validate_batch_id(item) for item in raw_ids))
    return CancelCommand(
        batch_ids=ids,
        reason=_optional_text(payload, "reason"),
        requested_by=_optional_text(payload, "requested_by"),
        cancel_at=_optional_time(payload, "cancel_at"),
    )


def _parse_check(payload: dict[str, Any]) -> StatusCheck:
    _reject_unknown(payload, {"check"}, "status check")
    check = payload["check"]
    if not isinstance(check, dict):
        raise InvalidInput("'check' must be an object")
    attempt = check.get("attempt")
    watch_id = check.get("watch_id")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise InvalidInput("'check.attempt' must be a positive integer")
    if not isinstance(watch_id, str) or not watch_id:
        raise InvalidInput("'check.watch_id' must be a non-empty string")
    since = _optional_time(check, "since")
    if since is None:
        raise InvalidInput("'check.since' is required")
    step = check.get("step", "")
    if not isinstance(step, str) or len(step) > 64:
        raise InvalidInput("'check.step' must be a string of at most 64 characters")
    return StatusCheck(
        batch_id=validate_batch_id(check.get("batch_id")),
        watch_id=watch_id,
        attempt=attempt,
        since=since,
        step=step,
    )


def _parse_sweep(payload: dict[str, Any]) -> SweepRequest:
    _reject_unknown(payload, {"sweep"}, "sweep")
    sweep = payload["sweep"]
    if not isinstance(sweep, dict):
        raise InvalidInput("'sweep' must be an object")
    _reject_unknown(sweep, SWEEP_FILTERS, "sweep")
    older = sweep.get("older_than_minutes")
    if older is not None and (
        not isinstance(older, int | float) or isinstance(older, bool) or not 0 <= older <= 10**7
    ):
        raise InvalidInput("'sweep.older_than_minutes' must be a number of minutes, 0 or more")
    metadata = sweep.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidInput("'sweep.metadata' must be an object of string keys and string values")
    statuses = sweep.get("statuses")
    if statuses is not None:
        if not isinstance(statuses, list) or not statuses:
            raise InvalidInput("'sweep.statuses' must be a non-empty list")
        unknown = [s for s in statuses if s not in NON_TERMINAL_STATUSES]
        if unknown:
            raise InvalidInput(
                f"'sweep.statuses' may only name non-terminal statuses "
                f"({', '.join(sorted(NON_TERMINAL_STATUSES))}); got {_preview(str(unknown))}"
            )
    dry_run = sweep.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("'sweep.dry_run' must be true or false")
    max_cancels = sweep.get("max_cancels")
    if max_cancels is not None and (
        not isinstance(max_cancels, int)
        or isinstance(max_cancels, bool)
        or not 1 <= max_cancels <= MAX_SWEEP_CANCELS
    ):
        raise InvalidInput(f"'sweep.max_cancels' must be an integer from 1 to {MAX_SWEEP_CANCELS}")
    return SweepRequest(
        older_than_minutes=older,
        metadata=dict(metadata),
        endpoint=_optional_text(sweep, "endpoint"),
        model=_optional_text(sweep, "model"),
        statuses=frozenset(statuses) if statuses is not None else None,
        dry_run=dry_run,
        max_cancels=max_cancels,
    )


def _parse_reconcile(payload: dict[str, Any]) -> ReconcileRequest:
    _reject_unknown(payload, {"reconcile"}, "reconcile")
    options = payload["reconcile"]
    if not isinstance(options, dict):
        raise InvalidInput("'reconcile' must be an object")
    _reject_unknown(options, {"max_records"}, "reconcile")
    most = options.get("max_records", ReconcileRequest.max_records)
    if (
        not isinstance(most, int)
        or isinstance(most, bool)
        or not 1 <= most <= MAX_RECONCILE_RECORDS
    ):
        raise InvalidInput(
            f"'reconcile.max_records' must be an integer from 1 to {MAX_RECONCILE_RECORDS}"
        )
    return ReconcileRequest(max_records=most)


def _event_time(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _reject_unknown(
    payload: Mapping[str, Any], allowed: set[str] | frozenset[str], what: str
) -> None:
    unknown = sorted(str(key) for key in payload if key not in allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) in {what}: {', '.join(_preview(k) for k in unknown[:5])};"
            f" allowed: {', '.join(sorted(allowed))}"
        )


def _optional_text(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a string, got {_json_type(value)}")
    if len(value) > MAX_TEXT_FIELD:
        raise InvalidInput(f"'{name}' is longer than {MAX_TEXT_FIELD} characters")
    return value


def _optional_time(payload: Mapping[str, Any], name: str) -> datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be an ISO-8601 string, got {_json_type(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'{name}' is not an ISO-8601 time: {_preview(value)}") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"'{name}' needs a UTC offset, e.g. 2026-01-01T06:00:00+00:00")
    return moment


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _preview(value: str, limit: int = 40) -> str:
    """Quote user text in errors without echoing huge or control-character input."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return ascii(shown)

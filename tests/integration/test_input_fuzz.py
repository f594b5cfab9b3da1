"""A structure-aware fuzz at the real handler: every field of every message shape the function
accepts, replaced in turn by every kind of JSON value, and unknown keys added to every object.
An invalid message lands in the DLQ with a reason naming its field; a valid one is handled; and
the valid message beside them in the same SQS batch is always cancelled.

Run with -s to see the (path, kind) coverage line."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batch_canceller.app import Application
from infra.openai_emulator import OpenAIEmulator
from tests.support import EVENT_SOURCE, Stack, client, context, failed_ids, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"
Path = tuple[str | int, ...]


class _RawNumber:
    """A number written as raw JSON text: `1e400` (Python reads it as inf, the function sees
    what Lambda's own json.loads gives it)."""

    text = "1e400"

    def __deepcopy__(self, memo: dict[int, object]) -> _RawNumber:
        return self  # one marker, found by identity


RAW_1E400 = _RawNumber()
KINDS: dict[str, object] = {
    "null": None,
    "true": True,
    "0": 0,
    "-1": -1,
    "2**70": 2**70,
    "1e400": RAW_1E400,
    '""': "",
    "300 KB string": "x" * 300_000,
    "[]": [],
    "[[]]": [[]],
    "{}": {},
    "nested object": {"a": {"b": [1, {"c": None}], "d": "e"}},
}
UNKNOWN_KEY = "zz_unknown"
UNKNOWN = "unknown key"  # the kind "an unknown key added to this object"
PER_INVOCATION = 9  # plus one valid bare ID: SQS delivers at most 10


def new_id() -> str:
    return "batch_fuzz_" + uuid.uuid4().hex[:12]


def iso(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


def envelope(detail_type: str, source: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": iso(0),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


@dataclass(frozen=True)
class Shape:
    name: str
    base: Callable[[], Any]
    paths: tuple[Path, ...]  # fields replaced by each kind; () is the message itself
    objects: tuple[Path, ...]  # objects that get an unknown key
    # (path, kind) pairs that are valid; UNKNOWN as the kind: an unknown key there is valid.
    valid: frozenset[tuple[Path, str]] = frozenset()
    via: str = "sqs"  # or "direct": a direct invoke of the payload


def every_kind(*paths: Path) -> frozenset[tuple[Path, str]]:
    """Fields the function does not read (envelope metadata): any value is fine."""
    return frozenset((path, kind) for path in paths for kind in [*KINDS, UNKNOWN])


SHAPES = (
    Shape(
        "bare ID",
        new_id,
        paths=((),),
        objects=(),
        # A body that does not start with {, [ or " is a bare ID, and these are valid IDs.
        valid=frozenset(((), kind) for kind in ("null", "true", "0", "-1", "2**70", "1e400")),
    ),
    Shape(
        "command",
        lambda: {"batch_ids": [new_id()], "reason": "fuzz", "requested_by": "fuzz@example.com"},
        paths=(("batch_ids",), ("batch_ids", 0), ("reason",), ("requested_by",)),
        objects=((),),
        # No reason, or an empty one, is a reason not given.
        valid=frozenset(
            (path, kind) for path in (("reason",), ("requested_by",)) for kind in ("null", '""')
        ),
    ),
    Shape("command, one ID", lambda: {"batch_id": new_id()}, paths=(("batch_id",),), objects=()),
    Shape(
        "cancel_at",
        lambda: {"batch_id": new_id(), "cancel_at": iso(2)},
        paths=(("cancel_at",),),
        objects=(),
    ),
    Shape(
        "sweep",
        lambda: {
            "sweep": {
                "older_than_minutes": 60,
                "metadata": {"project": "fuzz"},
                "endpoint": "/v1/chat/completions",
                "model": "gpt-fuzz",
                "statuses": ["in_progress"],
                "dry_run": True,
                "max_cancels": 5,
                "all": True,
            }
        },
        paths=(
            ("sweep",),
            ("sweep", "older_than_minutes"),
            ("sweep", "metadata"),
            ("sweep", "metadata", "project"),
            ("sweep", "endpoint"),
            ("sweep", "model"),
            ("sweep", "statuses"),
            ("sweep", "statuses", 0),
            ("sweep", "dry_run"),
            ("sweep", "max_cancels"),
            ("sweep", "all"),
        ),
        objects=((), ("sweep",), ("sweep", "metadata")),
        valid=frozenset(
            {
                (("sweep", "older_than_minutes"), "0"),
                (("sweep", "metadata"), "{}"),  # no metadata filter; the others still apply
                (("sweep", "metadata", "project"), '""'),
                (("sweep", "metadata"), UNKNOWN),  # one more pair to match
                (("sweep", "dry_run"), "true"),
                (("sweep", "all"), "true"),
            }
        ),
    ),
    Shape(
        "status check",
        lambda: {
            "check": {
                "batch_id": new_id(),
                "watch_id": uuid.uuid4().hex,
                "attempt": 1,
                "since": iso(0),
                "step": uuid.uuid4().hex,
            }
        },
        paths=(
            ("check",),
            ("check", "batch_id"),
            ("check", "watch_id"),
            ("check", "attempt"),
            ("check", "since"),
            ("check", "step"),
        ),
        objects=((), ("check",)),
        valid=frozenset({(("check", "step"), '""')}),  # a check from before steps had tokens
    ),
    Shape(
        "webhook notice",
        lambda: {
            "webhook": {
                "delivery_id": "msg_" + uuid.uuid4().hex,
                "event_id": "evt_" + uuid.uuid4().hex,
                "type": "batch.cancelled",
                "batch_id": new_id(),
                "created_at": 1733000000,
            }
        },
        paths=(
            ("webhook",),
            ("webhook", "delivery_id"),
            ("webhook", "event_id"),
            ("webhook", "type"),
            ("webhook", "batch_id"),
            ("webhook", "created_at"),
        ),
        objects=((), ("webhook",)),
        valid=frozenset({(("webhook", "created_at"), "0")}),  # the epoch is a time
    ),
    Shape(
        "receipt",
        lambda: envelope("Batch Cancelled", EVENT_SOURCE, {"batch_id": new_id(), "status": "x"}),
        paths=(
            ("detail-type",),
            ("source",),
            ("detail",),
            ("detail", "batch_id"),
            ("time",),
            ("id",),
            ("region",),
        ),
        objects=((), ("detail",)),
        # The envelope's other fields and the rest of the detail are not read: an odd `time`
        # only means the receipt's age is not known.
        valid=every_kind(("time",), ("id",), ("region",)) | {((), UNKNOWN), (("detail",), UNKNOWN)},
    ),
    Shape(
        "EventBridge envelope",
        lambda: envelope(
            "Batch Cancel Requested", "com.example.ops", {"batch_ids": [new_id()], "reason": "r"}
        ),
        paths=(
            ("detail-type",),
            ("source",),
            ("detail",),
            ("detail", "batch_ids"),
            ("detail", "batch_ids", 0),
            ("detail", "reason"),
            ("time",),
        ),
        objects=((), ("detail",)),
        valid=every_kind(("source",), ("time",))
        | {((), UNKNOWN), (("detail", "reason"), "null"), (("detail", "reason"), '""')},
    ),
    Shape(
        "direct payload",
        lambda: {"batch_ids": [new_id()], "reason": "fuzz"},
        paths=((), ("batch_ids",), ("batch_ids", 0), ("reason",)),
        objects=((),),
        valid=frozenset({(("reason",), "null"), (("reason",), '""')}),
        via="direct",
    ),
)


@dataclass(frozen=True)
class Case:
    shape: Shape
    path: Path
    kind: str
    message: Any  # the payload, RAW_1E400 left in place

    @property
    def valid(self) -> bool:
        return (self.path, self.kind) in self.shape.valid

    @property
    def field(self) -> str:
        """How the reason must name the field (quoted, as the function writes paths)."""
        path = (*self.path, UNKNOWN_KEY) if self.kind == UNKNOWN else self.path
        if not path:
            return "the message"
        text = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)
        return "'" + text.lstrip(".")

    def body(self) -> str:
        marker = "\u0000raw-number\u0000"
        text = json.dumps(_swap(self.message, RAW_1E400, marker))
        return text.replace(json.dumps(marker), RAW_1E400.text)

    def payload(self) -> Any:
        """As Lambda's runtime decodes a direct invoke: 1e400 is inf."""
        return _swap(self.message, RAW_1E400, float("inf"))


def _swap(value: Any, old: object, new: object) -> Any:
    if value is old:
        return new
    if isinstance(value, dict):
        return {key: _swap(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_swap(item, old, new) for item in value]
    return value


def _replaced(message: Any, path: Path, value: object) -> Any:
    if not path:
        return copy.deepcopy(value)
    changed = copy.deepcopy(message)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = copy.deepcopy(value)
    return changed


def cases() -> Iterator[Case]:
    for shape in SHAPES:
        for path in shape.paths:
            for kind, value in KINDS.items():
                yield Case(shape, path, kind, _replaced(shape.base(), path, value))
        for path in shape.objects:
            message = shape.base()
            target = message
            for step in path:
                target = target[step]
            target[UNKNOWN_KEY] = "x"
            yield Case(shape, path, UNKNOWN, message)


@pytest.fixture
def fuzz_app(stack: Stack, instant_emulator: OpenAIEmulator) -> Application:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    return stack.app(
        instant_emulator.base_url, SCHEDULER_ROLE_ARN=ROLE, SCHEDULE_GROUP_NAME=stack.table_name
    )


def test_every_field_of_every_shape_with_every_json_kind_is_parsed_or_dead_lettered_by_name(
    stack: Stack, instant_emulator: OpenAIEmulator, fuzz_app: Application
) -> None:
    all_cases = list(cases())
    queued = [case for case in all_cases if case.shape.via == "sqs"]
    direct = [case for case in all_cases if case.shape.via == "direct"]
    by_message_id: dict[str, Case] = {}
    good_ids: list[str] = []
    invocations = 0

    for start in range(0, len(queued), PER_INVOCATION):
        chunk = queued[start : start + PER_INVOCATION]
        good = instant_emulator.seed(status="in_progress")["id"]
        good_ids.append(good)
        ids = [f"fuzz-{start + n}-{uuid.uuid4().hex[:6]}" for n in range(len(chunk))]
        event = sqs_event(*(case.body() for case in chunk), good, ids=[*ids, f"good-{start}"])
        by_message_id.update(zip(ids, chunk, strict=True))

        answer = fuzz_app.handle(event, context())
        invocations += 1

        # Nothing is retried: invalid input is on the DLQ, everything else was handled.
        assert failed_ids(answer) == set(), [by_message_id.get(m) for m in failed_ids(answer)]

    direct_answers: dict[str, dict[str, Any]] = {}
    for number, case in enumerate(direct):
        request_id = f"direct-{number}"
        by_message_id[request_id] = case
        direct_answers[request_id] = fuzz_app.handle(case.payload(), context_with_id(request_id))
        invocations += 1

    reasons = {
        letter["MessageAttributes"]["original_message_id"]["StringValue"]: letter[
            "MessageAttributes"
        ]["error_reason"]["StringValue"]
        for letter in stack.dead_letters()
    }
    problems = []
    for message_id, case in by_message_id.items():
        reason = reasons.get(message_id)
        answer = direct_answers.get(message_id, {})
        label = f"{case.shape.name} {case.field} <- {case.kind}"
        if case.valid:
            if reason is not None or answer.get("status") == "rejected":
                problems.append(f"valid but dead-lettered: {label}: {reason}")
        elif reason is None:
            problems.append(f"invalid but not dead-lettered: {label}")
        elif case.field not in reason:
            problems.append(f"reason does not name the field: {label}: {reason}")
        elif case.shape.via == "direct" and case.field not in str(answer.get("error")):
            problems.append(f"direct answer does not name the field: {label}: {answer}")
    assert problems == []
    # The valid message beside the bad ones was cancelled every time.
    assert [(stack.item(i) or {}).get("status") for i in good_ids] == ["cancelled"] * len(good_ids)

    expected = {
        (shape.name, path, kind) for shape in SHAPES for path in shape.paths for kind in KINDS
    } | {(shape.name, path, UNKNOWN) for shape in SHAPES for path in shape.objects}
    covered = {(case.shape.name, case.path, case.kind) for case in by_message_id.values()}
    valid = sum(case.valid for case in by_message_id.values())
    print(
        f"\ninput fuzz coverage: {len(covered)}/{len(expected)} (path, kind) pairs over"
        f" {len(SHAPES)} shapes and {len(KINDS) + 1} kinds; {valid} valid and handled,"
        f" {len(covered) - valid} dead-lettered by name; {invocations} invocations"
    )
    assert covered == expected


def context_with_id(request_id: str) -> Any:
    ctx = context()
    ctx.aws_request_id = request_id
    return ctx

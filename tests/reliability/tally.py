"""Counting the outcome of a chaos run from what the system holds, not from what the worker says.

Sources: the events the bus delivered (an SQS queue fed by a rule on the bus), the table, the
emulator's batches, the DLQ, and the fault counters of the emulator and the proxy.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability import announce_journal

CANCELLED = "Batch Cancelled"
FINISHED = "Batch Finished Before Cancel"
FAILED = "Batch Cancel Failed"
NO_REASON = "(no error_reason: moved by SQS redrive after maxReceiveCount)"


class EventLog:
    """Every event read off the capture queue, by (batch_id, detail-type)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        # Event IDs, not a count: a capture message read twice is one event, two PutEvents are two.
        self.ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.times: dict[tuple[str, str], list[str]] = defaultdict(list)

    def drain(self, limit: int = 10_000) -> int:
        """Read what has arrived (at most `limit` messages, so one call stays short)."""
        read = 0
        while read < limit:
            messages = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                event = json.loads(message["Body"])
                key = (str(event["detail"].get("batch_id")), str(event["detail-type"]))
                if event["id"] not in self.ids[key]:
                    self.ids[key].add(event["id"])
                    self.times[key].append(str(event.get("time")))
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            read += len(messages)
        return read

    def count(self, batch_id: str, detail_type: str) -> int:
        return len(self.ids.get((batch_id, detail_type), ()))

    def per_type(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (_, detail_type), ids in self.ids.items():
            counts[detail_type] += len(ids)
        return counts


@dataclass(frozen=True)
class Record:
    status: str | None
    pending: frozenset[str]
    announced: frozenset[str]
    has_error: bool


def scan_records(dynamodb: Any, table: str) -> dict[str, Record]:
    """The table, read directly from moto (not through the faulty proxy), every page."""
    records: dict[str, Record] = {}
    request: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "ProjectionExpression": "batch_id, #s, pending_events, announced_events, last_error",
        "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        page = dynamodb.scan(**request)
        for item in page.get("Items", []):
            records[item["batch_id"]["S"]] = Record(
                status=item.get("status", {}).get("S"),
                pending=frozenset(item.get("pending_events", {}).get("SS", [])),
                announced=frozenset(item.get("announced_events", {}).get("SS", [])),
                has_error="last_error" in item,
            )
        if "LastEvaluatedKey" not in page:
            return records
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def emulator_statuses(control_url: str) -> dict[str, str]:
    with urllib.request.urlopen(control_url + "/batches", timeout=30) as answer:
        return {batch["id"]: batch["status"] for batch in json.load(answer)}


def emulator_fault_counts(control_url: str) -> dict[str, int]:
    with urllib.request.urlopen(control_url + "/fault_counts", timeout=30) as answer:
        return {str(k): int(v) for k, v in json.load(answer).items()}


@dataclass(frozen=True)
class DeadLetter:
    body: str
    reason: str
    original_id: str | None


def read_dead_letters(sqs: Any, dlq_url: str) -> list[DeadLetter]:
    """Every message on the DLQ (left there, hidden for the rest of the run)."""
    found: list[DeadLetter] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=3600,
        ).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            reason = attributes.get("error_reason", {}).get("StringValue") or NO_REASON
            original = attributes.get("original_message_id", {}).get("StringValue")
            found.append(DeadLetter(message["Body"], reason, original))


@dataclass
class Duplicate:
    batch_id: str
    detail_type: str
    count: int
    times: tuple[str, ...]
    cause: str = "unexplained"
    killed_incarnations: list[int] = field(default_factory=list)

    @property
    def by_kill(self) -> bool:
        return bool(self.killed_incarnations)


@dataclass
class Outcome:
    """Everything the final table shows; `problems` lists why the run failed, if it did."""

    commands_valid: int = 0
    commands_invalid: int = 0
    batches_requested: int = 0
    cancel_expected: int = 0
    finished_expected: int = 0
    missing_expected: int = 0
    emulator_cancelled: int = 0
    records_cancelled: int = 0
    records_finished: int = 0
    records_failed: int = 0
    records_pending: int = 0
    events_per_type: Counter[str] = field(default_factory=Counter)
    duplicates: list[Duplicate] = field(default_factory=list)
    lost_cancellations: list[str] = field(default_factory=list)
    lost_other: list[tuple[str, str]] = field(default_factory=list)
    unexpected_events: list[tuple[str, str]] = field(default_factory=list)
    dlq_total: int = 0
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    dlq_missing: list[str] = field(default_factory=list)
    dlq_unexpected: list[str] = field(default_factory=list)
    dlq_copies: int = 0
    api_faults: dict[str, int] = field(default_factory=dict)
    aws_faults: dict[str, int] = field(default_factory=dict)
    aws_calls: dict[str, int] = field(default_factory=dict)
    redeliveries_injected: int = 0
    kills: int = 0
    kills_mid_invocation: int = 0
    kills_wanted: int = 0
    worker_crashes: int = 0
    invocations: int = 0
    messages_received: int = 0
    messages_failed: int = 0
    handler_errors: int = 0  # invocations that raised instead of reporting failed messages
    # The function's own metrics (EMF lines in the worker's log): receipts it handled, and the
    # events a receipt had to mark announced because their publisher died first.
    receipts_handled: int = 0
    events_marked_by_receipt: int = 0
    complete_under_chaos_after: float | None = None
    chaos_seconds: float = 0.0
    settle_seconds: float = 0.0
    settled: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def extra_events(self) -> int:
        return sum(d.count - 1 for d in self.duplicates)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.lost_cancellations:
            found.append(f"{len(self.lost_cancellations)} lost cancellations")
        if self.lost_other:
            found.append(f"{len(self.lost_other)} other outcomes never announced")
        if self.duplicates:
            by_kill = sum(d.by_kill for d in self.duplicates)
            found.append(
                f"{self.extra_events} duplicate events for {len(self.duplicates)} batches"
                f" ({by_kill} of them traced to a SIGKILL between PutEvents and the announced"
                " mark)"
            )
        if self.unexpected_events:
            found.append(f"{len(self.unexpected_events)} unexpected events")
        if self.dlq_missing or self.dlq_unexpected:
            found.append(
                f"DLQ is not exactly the invalid inputs ({len(self.dlq_missing)} missing,"
                f" {len(self.dlq_unexpected)} unexpected)"
            )
        if self.emulator_cancelled != self.cancel_expected:
            found.append("not every batch is cancelled in the emulator")
        if self.records_cancelled != self.cancel_expected:
            found.append("not every batch is recorded cancelled")
        if self.records_finished != self.finished_expected:
            found.append("not every finished batch is recorded as such")
        if self.records_failed != self.missing_expected:
            found.append("not every unknown batch is recorded with last_error")
        if self.records_pending:
            found.append(f"{self.records_pending} records still owe events")
        if self.kills < self.kills_wanted:
            found.append(f"only {self.kills} of {self.kills_wanted} kills happened")
        if self.worker_crashes:
            found.append(f"the worker exited {self.worker_crashes} times on its own")
        if not self.settled:
            found.append("the queue never drained after the faults stopped")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems


def check_events(outcome: Outcome, events: EventLog, expected: dict[str, str]) -> None:
    """`expected`: batch_id -> the one detail-type it must be announced with."""
    outcome.events_per_type = events.per_type()
    for (batch_id, detail_type), ids in sorted(events.ids.items()):
        if expected.get(batch_id) != detail_type:
            outcome.unexpected_events.append((batch_id, detail_type))
        if len(ids) > 1:
            times = tuple(sorted(events.times[(batch_id, detail_type)]))
            outcome.duplicates.append(Duplicate(batch_id, detail_type, len(ids), times))
    for batch_id, detail_type in sorted(expected.items()):
        if events.count(batch_id, detail_type) == 0:
            if detail_type == CANCELLED:
                outcome.lost_cancellations.append(batch_id)
            else:
                outcome.lost_other.append((batch_id, detail_type))


def explain_duplicates(outcome: Outcome, state_dir: Path, killed: set[int]) -> None:
    """Trace each duplicate through the workers' announcement journals."""
    journals = {
        int(path.stem.removeprefix("journal-")): announce_journal.read(path)
        for path in state_dir.glob("journal-*.tsv")
    }
    for duplicate in outcome.duplicates:
        key = (duplicate.batch_id, duplicate.detail_type)
        causes = []
        for incarnation, entries in sorted(journals.items()):
            if incarnation in killed and key in announce_journal.in_window(entries):
                duplicate.killed_incarnations.append(incarnation)
                causes.append(
                    f"worker {incarnation} SIGKILLed after PutEvents, before the announced mark"
                )
            elif key in announce_journal.failed_marks(entries):
                causes.append(f"worker {incarnation}: the announced mark failed after PutEvents")
        if causes:
            duplicate.cause = "; ".join(causes)


def check_dead_letters(
    outcome: Outcome, letters: Iterable[DeadLetter], invalid: dict[str, str]
) -> None:
    """`invalid`: SQS MessageId -> body of each invalid input sent."""
    letters = list(letters)
    outcome.dlq_total = len(letters)
    outcome.dlq_reasons = Counter(letter.reason for letter in letters)
    seen: Counter[str] = Counter()
    for letter in letters:
        if letter.original_id in invalid and invalid[letter.original_id] == letter.body:
            seen[letter.original_id] += 1
        else:
            outcome.dlq_unexpected.append(letter.body[:80])
    outcome.dlq_missing = [body[:80] for mid, body in invalid.items() if mid not in seen]
    # SQS redelivered an invalid input before its deletion: dead-lettered at least once.
    outcome.dlq_copies = sum(count - 1 for count in seen.values())


def emf_totals(log_path: Path, names: Sequence[str]) -> dict[str, int]:
    """Sums of the function's EMF metrics `names` over every line of a log."""
    totals = dict.fromkeys(names, 0)
    if not log_path.exists():
        return totals
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith('{"_aws"'):
            continue
        try:
            blob = json.loads(line)
        except ValueError:
            continue  # a line cut short by a SIGKILL
        for name in names:
            value = blob.get(name)
            values = value if isinstance(value, list) else [value]
            totals[name] += int(sum(v for v in values if isinstance(v, int | float)))
    return totals


def render(outcome: Outcome, header: list[str]) -> str:
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: object, expected: object = "") -> None:
        rows.append((name, str(value), str(expected)))

    o = outcome
    row("commands sent (valid + invalid)", f"{o.commands_valid} + {o.commands_invalid}")
    row(
        "batches requested",
        o.batches_requested,
        f"{o.cancel_expected} to cancel, {o.finished_expected} finished, "
        f"{o.missing_expected} unknown",
    )
    row("batches cancelled: emulator state", o.emulator_cancelled, o.cancel_expected)
    row("batches cancelled: records", o.records_cancelled, o.cancel_expected)
    row("records finished before cancel", o.records_finished, o.finished_expected)
    row("records with last_error (404)", o.records_failed, o.missing_expected)
    row("records still owing events", o.records_pending, 0)
    for detail_type, expected in (
        (CANCELLED, o.cancel_expected),
        (FINISHED, o.finished_expected),
        (FAILED, o.missing_expected),
    ):
        row(f"events: {detail_type}", o.events_per_type.get(detail_type, 0), expected)
    for detail_type, count in sorted(o.events_per_type.items()):
        if detail_type not in (CANCELLED, FINISHED, FAILED):
            row(f"events: {detail_type}", count, 0)
    row("duplicate events (extra copies, same batch_id + detail-type)", o.extra_events, 0)
    row("  batches announced more than once", len(o.duplicates), 0)
    row(
        "  of which traced to a SIGKILL between PutEvents and the mark",
        sum(d.by_kill for d in o.duplicates),
    )
    row("lost cancellations (no Batch Cancelled)", len(o.lost_cancellations), 0)
    row("other outcomes never announced", len(o.lost_other), 0)
    row("unexpected events", len(o.unexpected_events), 0)
    row("messages in the DLQ", o.dlq_total)
    distinct = o.dlq_total - o.dlq_copies - len(o.dlq_unexpected)
    row("  distinct invalid inputs (by original_message_id)", distinct, o.commands_invalid)
    row("  copies of an input SQS delivered again", o.dlq_copies)
    row("  invalid inputs missing from the DLQ", len(o.dlq_missing), 0)
    row("  DLQ messages that are not invalid inputs", len(o.dlq_unexpected), 0)
    for reason, count in sorted(o.dlq_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        row(f"  reason: {_clip(reason, 90)}", count)
    for label, count in sorted(o.api_faults.items()):
        row(f"faults: OpenAI API {_API_FAULTS.get(label, label)}", count)
    for label, count in sorted(o.aws_faults.items()):
        row(f"faults: {label}", count)
    row("faults: SQS redeliveries (handled, left undeleted)", o.redeliveries_injected)
    row("faults: SIGKILL of the worker (mid-invocation)", f"{o.kills} ({o.kills_mid_invocation})")
    row("worker exits not caused by the run", o.worker_crashes, 0)
    row("invocations / messages received / reported failed", _slash(o))
    row("invocations that raised (all their messages came back)", o.handler_errors)
    row("receipts handled (the bus's copies of the function's events)", o.receipts_handled)
    row("  events a receipt marked announced (publisher killed first)", o.events_marked_by_receipt)
    for operation, count in sorted(o.aws_calls.items()):
        row(f"AWS calls through the proxy: {operation}", count)
    under = o.complete_under_chaos_after
    row("all done under chaos after", "no (time limit)" if under is None else f"{under:.0f} s")
    row("chaos phase / settle phase", f"{o.chaos_seconds:.0f} s / {o.settle_seconds:.0f} s")
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [*header, ""]
    lines.append(f"{'':{width}}  {'value':>{value_width}}  expected")
    lines.append("-" * (width + value_width + 12))
    lines += [
        f"{name:{width}}  {value:>{value_width}}  {expected}".rstrip()
        for name, value, expected in rows
    ]
    lines.append("-" * (width + value_width + 12))
    lines += _details(o)
    lines.append("RESULT: PASS" if o.passed else "RESULT: FAIL - " + "; ".join(o.problems))
    return "\n".join(lines)


_API_FAULTS = {
    "429": "429 with retry-after",
    "500": "500",
    "503": "503",
    "delay": "answer past the read timeout",
    "reset": "connection reset",
    "malformed": "malformed JSON body",
}


def _details(o: Outcome) -> list[str]:
    lines = list(o.notes)
    for duplicate in o.duplicates[:20]:
        lines.append(
            f"duplicate: {duplicate.batch_id} {duplicate.detail_type!r} x{duplicate.count}"
            f" at {', '.join(duplicate.times)}: {duplicate.cause}"
        )
    lines += [f"lost: {batch_id}" for batch_id in o.lost_cancellations[:20]]
    lines += [f"never announced: {b} ({t})" for b, t in o.lost_other[:20]]
    lines += [f"unexpected event: {b} {t!r}" for b, t in o.unexpected_events[:20]]
    lines += [f"missing from DLQ: {body!r}" for body in o.dlq_missing]
    lines += [f"unexpected in DLQ: {body!r}" for body in o.dlq_unexpected[:20]]
    return lines


def _slash(o: Outcome) -> str:
    return f"{o.invocations} / {o.messages_received} / {o.messages_failed}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

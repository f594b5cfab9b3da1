"""Counting the outcome of a chaos run from what the system holds, not from what the worker says.

Sources: the events the bus delivered (an SQS queue fed by a rule on the bus), the table, the
emulator's batches, the DLQ, and the fault counters of the emulator and the proxy.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability import announce_journal
from tests.reliability.deliveries import last_begin
from tests.reliability.outcome import Duplicate, Outcome

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
    journals = announce_journal.read_all(state_dir)
    for duplicate in outcome.duplicates:
        key = (duplicate.batch_id, duplicate.detail_type)
        causes = []
        duplicate.trace = _trace(journals, key)
        for incarnation, entries in sorted(journals.items()):
            # A killed worker's last invocation is the one the SIGKILL cut short.
            last = announce_journal.since(entries, last_begin(state_dir, incarnation))
            if incarnation in killed and key in announce_journal.in_window(last):
                duplicate.killed_incarnations.append(incarnation)
                causes.append(
                    f"worker {incarnation} SIGKILLed after PutEvents, before the announced mark"
                )
            elif key in announce_journal.failed_marks(entries):
                causes.append(f"worker {incarnation}: the announced mark failed after PutEvents")
        if causes:
            duplicate.cause = "; ".join(causes)


def _trace(journals: dict[int, list[announce_journal.Entry]], key: tuple[str, str]) -> list[str]:
    """Every journal line of one event, every worker's, in time order."""
    lines = sorted(
        (e.at, f"worker {incarnation} {e.step} {' '.join(map(_field, e.extra))}".rstrip())
        for incarnation, entries in journals.items()
        for e in entries
        if e.key == key
    )
    return [f"{_clock(at)} {line}" for at, line in lines]


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]


def _field(extra: str) -> str:
    """A journal line's extra field, epoch seconds (a lease's end) shown as a time of day."""
    try:
        return f"lease {_clock(float(extra))}"
    except ValueError:
        return extra  # a claim token


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


def emf_totals(log_paths: Iterable[Path]) -> Counter[str]:
    """Sums of the function's EMF metrics (counts) over every line of some logs."""
    totals: Counter[str] = Counter()
    for log_path in log_paths:
        for line in log_path.read_text(errors="replace").splitlines():
            if not line.startswith('{"_aws"'):
                continue
            try:
                blob = json.loads(line)
                declared = blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            except (ValueError, KeyError, IndexError, TypeError):
                continue  # a line cut short by a SIGKILL
            for metric in declared:
                if metric.get("Unit") != "Count":
                    continue
                value = blob.get(metric["Name"])
                values = value if isinstance(value, list) else [value]
                totals[metric["Name"]] += int(sum(v for v in values if isinstance(v, int | float)))
    return totals

"""The three entry points (and receipts), fed the sample events in events/ (the same files `sam local invoke -e` uses)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from batch_canceller.announce_protocol import Claim
from infra.openai_emulator import Fault, OpenAIEmulator
from tests.support import Stack, context, failed_ids

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def test_sqs_sample_with_a_bare_id_cancels_it(stack: Stack, emulator: OpenAIEmulator) -> None:
    event = load_event("sqs-bare-id.json")
    emulator.seed(batch_id=event["Records"][0]["body"], status="in_progress")
    app = stack.app(emulator.base_url)

    answer = app.handle(event, context())

    assert answer == {"batchItemFailures": []}
    assert (stack.item("batch_abc123") or {}).get("status") == "cancelling"


def test_sqs_sample_with_a_command_and_an_invalid_record(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    event = load_event("sqs-command.json")
    emulator.seed(batch_id="batch_abc123", status="in_progress")
    emulator.seed(batch_id="batch_def456", status="completed")
    app = stack.app(emulator.base_url)

    answer = app.handle(event, context())

    assert failed_ids(answer) == set()
    first = stack.item("batch_abc123")
    assert first is not None
    assert (first["status"], first["reason"], first["requested_by"]) == (
        "cancelling",
        "nightly cutoff",
        "ops@example.com",
    )
    assert (stack.item("batch_def456") or {}).get("status") == "completed"
    letters = stack.dead_letters()
    assert [m["Body"] for m in letters] == ["../files"]


def test_eventbridge_cancel_requested_sample(stack: Stack, emulator: OpenAIEmulator) -> None:
    event = load_event("eventbridge-cancel-requested.json")
    emulator.seed(batch_id="batch_abc123", status="in_progress")
    app = stack.app(emulator.base_url)

    answer = app.handle(event, context())

    assert answer["status"] == "done"
    item = stack.item("batch_abc123")
    assert item is not None
    assert item["reason"] == "budget exceeded"
    assert item["requested_by"] == "finops@example.com"


def test_eventbridge_event_of_another_detail_type_is_rejected_to_the_dlq(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    event = load_event("eventbridge-cancel-requested.json")
    event["detail-type"] = "Something Else"
    app = stack.app(emulator.base_url)

    answer = app.handle(event, context())

    assert answer["status"] == "rejected"
    assert "unsupported detail-type" in answer["error"]
    letters = stack.dead_letters()
    assert len(letters) == 1
    assert letters[0]["MessageAttributes"]["error_source"]["StringValue"] == "eventbridge"
    assert emulator.requests == []


def test_direct_invoke_sample(stack: Stack, emulator: OpenAIEmulator) -> None:
    emulator.seed(batch_id="batch_abc123", status="in_progress")
    app = stack.app(emulator.base_url)

    answer = app.handle(load_event("direct-command.json"), context())

    assert answer == {"status": "done", "outcomes": {"cancelling": 1}, "requeued": []}
    assert (stack.item("batch_abc123") or {}).get("reason") == "manual cancel"


def test_direct_invoke_with_invalid_payload_answers_the_reason(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    app = stack.app(emulator.base_url)

    answer = app.handle({"batch_ids": ["ok_id", "a/b"]}, context())

    assert answer["status"] == "rejected"
    assert "invalid batch ID" in answer["error"]
    assert len(stack.dead_letters()) == 1


def test_unfinished_work_from_an_event_is_requeued_not_lost(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    # GIVEN an API that keeps failing for one of two batches
    ok = emulator.seed(status="in_progress")
    broken = emulator.seed(status="in_progress")
    emulator.inject(Fault("status", status=503, path_regex=broken["id"], times=None))
    app = stack.app(emulator.base_url)

    answer = app.handle(
        {"batch_ids": [ok["id"], broken["id"]], "reason": "cutoff", "requested_by": "me"},
        context(),
    )

    # THEN the failed one is put on the queue, with its reason, for SQS to retry
    assert answer["status"] == "partially_requeued"
    assert answer["requeued"] == [broken["id"]]
    assert {
        "batch_ids": [broken["id"]],
        "reason": "cutoff",
        "requested_by": "me",
    } in stack.queued_bodies()


def test_sqs_sample_receipt_marks_an_owed_event_announced_without_publishing(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    # GIVEN a record that owes `Batch Cancelled`, claimed by the delivery that published it
    # (the sample's publication_id), which died before marking it
    app = stack.app(emulator.base_url)
    publisher = Claim("7b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e/5e6f7a8b9c0d", time.time() + 600)
    batch = {"id": "batch_abc123", "status": "cancelled"}
    stack.store().save_batch("batch_abc123", batch, claim=publisher)

    # WHEN the bus's receipt of that event arrives
    answer = app.handle(load_event("sqs-receipt.json"), context())

    # THEN the event is marked announced and nothing is published again
    assert answer == {"batchItemFailures": []}
    item = stack.item("batch_abc123") or {}
    assert "pending_events" not in item
    assert item["announced_events"] == {"Batch Cancelled"}
    assert stack.events() == []

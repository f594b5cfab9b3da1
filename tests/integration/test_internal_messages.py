"""Status checks, webhook notices and receipts are the function's own messages: accepted from its queue only,
never from the `Batch Cancel Requested` rule or a direct invoke (anyone allowed to put an
event or invoke could otherwise forge one; a forged receipt marks an event announced)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import EVENT_SOURCE, Stack, context, failed_ids, sqs_event


def check_message(batch_id: str) -> dict[str, Any]:
    since = datetime.now(UTC).isoformat()
    return {"check": {"batch_id": batch_id, "watch_id": "w1", "attempt": 1, "since": since}}


def webhook_notice(batch_id: str) -> dict[str, Any]:
    return {
        "webhook": {
            "delivery_id": "msg_1",
            "event_id": "evt_1",
            "type": "batch.cancelled",
            "batch_id": batch_id,
            "created_at": 1733000000,
        }
    }


def receipt_envelope(batch_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "3f1c2a9e-5b7d-4c1e-9a2b-7d8e6f5a4b3c",
        "detail-type": "Batch Cancelled",
        "source": EVENT_SOURCE,
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "us-east-1",
        "resources": [],
        "detail": {"batch_id": batch_id, "status": "cancelled"},
    }


def cancel_requested(detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "ev-1",
        "detail-type": "Batch Cancel Requested",
        "source": "com.example.ops",
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def reasons(stack: Stack) -> list[tuple[str, str]]:
    return [
        (
            letter["MessageAttributes"]["error_source"]["StringValue"],
            letter["MessageAttributes"]["error_reason"]["StringValue"],
        )
        for letter in stack.dead_letters()
    ]


def test_a_status_check_from_the_cancel_requested_rule_is_rejected_to_the_dlq(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")["id"]

    stack.app(emulator.base_url).handle(cancel_requested(check_message(batch)), context())

    [(source, reason)] = reasons(stack)
    assert source == "eventbridge"
    assert "status check" in reason
    assert emulator.requests == []


def test_a_webhook_notice_from_the_cancel_requested_rule_is_rejected_to_the_dlq(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")["id"]

    stack.app(emulator.base_url).handle(cancel_requested(webhook_notice(batch)), context())

    [(source, reason)] = reasons(stack)
    assert source == "eventbridge"
    assert "webhook notice" in reason
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("status check", check_message),
        ("status check", lambda b: json.dumps(check_message(b))),  # a string payload: a body
        ("receipt", lambda b: json.dumps(receipt_envelope(b))),
        ("webhook notice", webhook_notice),
        ("webhook notice", lambda b: json.dumps(webhook_notice(b))),
    ],
    ids=["check object", "check as a body", "receipt as a body", "notice", "notice as a body"],
)
def test_an_internal_message_by_direct_invoke_is_rejected(
    stack: Stack, emulator: OpenAIEmulator, kind: str, payload: Any
) -> None:
    batch = emulator.seed(status="in_progress")["id"]

    answer = stack.app(emulator.base_url).handle(payload(batch), context())

    assert answer["status"] == "rejected"
    assert f"{kind} is an internal message" in answer["error"]
    [(source, reason)] = reasons(stack)
    assert (source, reason) == ("direct", answer["error"])
    assert emulator.requests == []


def test_the_same_messages_from_the_queue_are_accepted(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")["id"]
    event = sqs_event(json.dumps(check_message(batch)), json.dumps(receipt_envelope(batch)))

    answer = stack.app(emulator.base_url).handle(event, context())

    assert failed_ids(answer) == set()
    assert reasons(stack) == []
    assert [r.path for r in emulator.requests] == [f"/v1/batches/{batch}"]  # the check looked

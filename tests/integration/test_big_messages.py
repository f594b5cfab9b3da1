"""A valid command whose IDs take longer than the work phase never finishes and is
dead-lettered.

`CancelProcessor.run` stops new work when ANNOUNCE_SHARE (30 %) of the usable time is left; the
items not started are "deferred", and their *whole message* is reported failed. SQS work has
no partial progress: the redelivery (after the visibility timeout) starts the message from its
first ID again, redoing every cancel (already-cancelled batches now cost two API calls each:
cancel -> 409 "cannot cancel" -> retrieve), so it is deferred again at the same place or
earlier. After maxReceiveCount (5) receives the valid message goes to the DLQ, and the IDs past
the cut-off were never cancelled. (Direct and EventBridge invokes do requeue the unfinished
part; SQS messages do not.)

In production: Timeout 120 -> work phase ~80 s. A 1000-ID command (MAX_BATCH_IDS) with
MaxInFlight 4 (the parameter allows 1-256) at 0.35 s per API call needs ~88 s. Here, scaled
down: a 9 s invocation (work phase 2.8 s), MAX_IN_FLIGHT 1, 0.25 s per call, 24 IDs.

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import API_KEY, Stack, client

IDS = 24


@pytest.fixture
def slow_api() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0, latency_seconds=0.25) as emu:
        yield emu


def test_a_valid_command_bigger_than_one_work_phase_is_finished(
    stack: Stack, slow_api: OpenAIEmulator
) -> None:
    ids = [slow_api.seed(status="in_progress")["id"] for _ in range(IDS)]
    app = stack.app(slow_api.base_url, MAX_IN_FLIGHT="1")
    client("sqs", stack.endpoint).send_message(
        QueueUrl=stack.queue_url, MessageBody=json.dumps({"batch_ids": ids})
    )
    source = stack.event_source(app, function_timeout_seconds=9.0)
    handled = []
    for _ in range(8):
        result = source.poll_once(wait_seconds=3)
        if result.received:
            handled.append((result.received, result.failed))
        if stack.queue_depth() == 0:
            break
    dead = stack.dead_letters()
    statuses = [slow_api.get(b)["status"] for b in ids]
    print(
        "deliveries (received, failed):",
        handled,
        "| in the DLQ:",
        len(dead),
        "| not cancelled:",
        sum(s != "cancelled" for s in statuses),
    )
    assert dead == [], "a valid command was dead-lettered after making no progress"
    assert all(s == "cancelled" for s in statuses)

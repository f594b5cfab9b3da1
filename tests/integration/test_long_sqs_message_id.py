"""A message's claim token may name it by a hash of its ID (a long or odd ID), but its batch
item failure and its dead letter name it by the ID it came with: ReportBatchItemFailures
matches records by their `messageId`. Found by the fourth adversarial review of issue 11 (the
failure was reported under the hash); the tests failed before the fix."""

from __future__ import annotations

import pytest

from infra.openai_emulator import Fault, OpenAIEmulator
from tests.support import Stack, context, failed_ids, sqs_event


@pytest.mark.parametrize("message_id", ["m" * 120, "msg-\u00e9-1"], ids=["long", "non-ASCII"])
def test_a_failed_message_is_reported_under_its_own_message_id(
    stack: Stack, instant_emulator: OpenAIEmulator, message_id: str
) -> None:
    """An SQS record whose messageId would be hashed in its claim token asks to cancel a
    batch; every cancel answers 500, so the message must come back under that messageId."""
    batch_id = instant_emulator.seed(status="in_progress")["id"]
    instant_emulator.inject(Fault("status", status=500, times=None))
    event = sqs_event(batch_id, ids=[message_id])
    answer = stack.app(instant_emulator.base_url).handle(event, context(20))
    assert failed_ids(answer) == {message_id}, "failure reported under an ID SQS never issued"


def test_a_dead_letter_keeps_the_original_message_id(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    """Sequence: an SQS record with a 120-char messageId and an invalid body is dead-lettered.
    Expected: the DLQ's `original_message_id` attribute names the record's messageId (the
    operator's only link back); it carries the hash instead."""
    long_id = "m" * 120
    answer = stack.app(instant_emulator.base_url).handle(
        sqs_event("../bad", ids=[long_id]), context(20)
    )
    [dead] = stack.dead_letters()
    original = dead["MessageAttributes"]["original_message_id"]["StringValue"]
    print("answer:", answer, "original_message_id:", original)
    assert original == long_id

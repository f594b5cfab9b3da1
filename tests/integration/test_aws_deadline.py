"""A stalled DynamoDB or SQS does not hold an invocation past its deadline, and nothing is lost.

The SDK bounded a call only by its own settings (6 attempts of up to 3 s connect + 10 s read),
and several calls ran with no deadline check at all: receipts were confirmed before any
(`_handle_sqs` -> `confirm` -> `pending_events_of`), and so were the marks, requeues, status
checks and postpones after the work phase. Found by an adversarial review (an SQS batch of one
receipt, BatchGetItem stalled 11 s twice, an 8 s invocation: it took over 20 s); each test
here failed before the fix. Each stall is longer than the SDK's old read timeout.

The calls are now refused when the deadline leaves no time for an attempt (aws_deadline): a
refused call is a failed one, so the message comes back, and its redelivery does the work.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, DyingSession, Stack, client, context, failed_ids, sqs_event

BUDGET = 8.0
STALL_SECONDS = 11.0


def _stall(proxy: FaultProxy, operation: str) -> None:
    proxy.add_rule(
        Rule(operation=operation, action="delay", delay_seconds=STALL_SECONDS, times=None)
    )


def _timed(app: Any, event: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    answer = app.handle(event, context(BUDGET))
    took = time.monotonic() - started
    print(f"answer {answer}; an invocation of {BUDGET:.0f} s returned after {took:.1f} s")
    return answer, took


def _unmarked_receipt(stack: Stack, emulator: OpenAIEmulator) -> tuple[str, str]:
    """A batch whose event was published but not marked announced (its publisher died right
    after PutEvents), and the receipt of that event as the bus delivers it to the queue."""
    batch_id = emulator.seed(status="in_progress")["id"]
    with pytest.raises(Crash):
        stack.app(emulator.base_url, session=DyingSession(published=True)).handle(
            sqs_event(batch_id), context()
        )
    [event] = stack.events_of("Batch Cancelled", batch_id)
    return batch_id, json.dumps(event)


@pytest.mark.parametrize(
    "stalled",
    ["DynamoDB.BatchGetItem", "DynamoDB.UpdateItem"],
    ids=["receipts are not confirmed past the deadline", "a receipt is not marked past it"],
)
def test_a_receipt_stalled_in_dynamodb_comes_back_before_the_deadline(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy, stalled: str
) -> None:
    batch_id, receipt = _unmarked_receipt(stack, instant_emulator)
    _stall(proxy, stalled)
    event = sqs_event(receipt)
    answer, took = _timed(stack.app(instant_emulator.base_url, aws_endpoint=proxy.url), event)
    assert took < BUDGET, f"ran {took - BUDGET:.1f} s past its deadline (Lambda kills it there)"
    assert failed_ids(answer) == {event["Records"][0]["messageId"]}

    proxy.clear_rules()
    again = stack.app(instant_emulator.base_url).handle(event, context())
    assert failed_ids(again) == set()
    item = stack.item(batch_id)
    assert item is not None
    assert "Batch Cancelled" in item["announced_events"]


def test_status_checks_are_not_sent_past_the_deadline(
    stack: Stack, slow_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    _stall(proxy, "SQS.SendMessageBatch")
    event = sqs_event(slow_emulator.seed(status="in_progress")["id"])
    answer, took = _timed(stack.app(slow_emulator.base_url, aws_endpoint=proxy.url), event)
    assert took < BUDGET, f"ran {took - BUDGET:.1f} s past its deadline (Lambda kills it there)"
    # The check was not queued: the message comes back to queue it.
    assert failed_ids(answer) == {event["Records"][0]["messageId"]}

    proxy.clear_rules()
    again = stack.app(slow_emulator.base_url).handle(event, context())
    assert failed_ids(again) == set()  # its check is queued now (delayed: not yet visible)
    sqs = client("sqs", stack.endpoint)
    waiting = sqs.get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
    assert int(waiting) >= 1


def test_concurrent_invocations_on_one_application_keep_their_own_deadlines(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """Tests and the model run deliveries concurrently in one process: a deadline held by the
    Application (or the clients) would be the last invocation's, not each one's own."""
    _, receipt = _unmarked_receipt(stack, instant_emulator)
    _stall(proxy, "DynamoDB.BatchGetItem")  # only the receipt reads with BatchGetItem
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    short = sqs_event(receipt)
    answers: dict[str, tuple[dict[str, Any], float]] = {}
    stalled = threading.Thread(target=lambda: answers.update(short=_timed(app, short)))
    stalled.start()
    time.sleep(0.5)  # the short invocation is inside its BatchGetItem
    cancel = sqs_event(instant_emulator.seed(status="in_progress")["id"])
    long_answer = app.handle(cancel, context(60.0))  # started last, with plenty of time
    stalled.join()
    short_answer, took = answers["short"]
    assert took < BUDGET, f"ran {took - BUDGET:.1f} s past its deadline (Lambda kills it there)"
    assert failed_ids(short_answer) == {short["Records"][0]["messageId"]}
    assert failed_ids(long_answer) == set()

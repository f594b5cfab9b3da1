"""A receipt that could not be recorded comes back within the grace (found by an adversarial review).

The protocol's answer to "the publisher died after PutEvents" is the receipt, and the lease's
grace (60 s) is "the time its receipt gets to arrive and mark the event announced". But when
handling a receipt fails (one BatchGetItem or UpdateItem blip: `confirm` returns False), the
app only lists the receipt in `batchItemFailures`; it does not postpone it the way it postpones
waiting work, so the receipt comes back after the queue's VisibilityTimeout (1,020 s), far past
the grace. The publisher's own message is redelivered at its visibility timeout, which started
*earlier* (when it was received, before it published), so it comes back first, finds the claim
lapsed, takes it over and publishes the event a second time. The receipt, when it returns,
marks nothing.

Sequence:
  t0        M1 (a cancel) is received; the invocation writes the transition, PutEvents is
            accepted, the container dies before the mark (DyingSession(published=True)).
  t0+~1 s   the receipt is on the queue, is received, and DynamoDB blips for ~2 s: the
            receipt fails and is invisible until ~t0+1021 s.
  t0+1020 s M1 is redelivered, finds the dead delivery's claim lapsed: publishes again.
The receipt was delivered within the grace; one quick retry of it would have prevented this.
"""

from __future__ import annotations

import pytest

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, DyingSession, LocalAws, client, context, later, sqs_event

VISIBILITY_TIMEOUT = 1020  # template.yaml's CancelQueue


def test_a_receipt_that_arrived_in_time_prevents_the_second_publication(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    stack = local_aws.create_stack(visibility_timeout=VISIBILITY_TIMEOUT)
    batch = instant_emulator.seed(status="in_progress")
    m1 = sqs_event(batch["id"])

    # t0: the publisher dies between the accepted PutEvents and the mark.
    with pytest.raises(Crash):
        stack.app(instant_emulator.base_url, session=DyingSession(published=True)).handle(
            m1, context()
        )
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1

    # t0+~1 s: its receipt is received while DynamoDB blips (every SDK attempt fails).
    proxy.add_rule(Rule(operation="DynamoDB.BatchGetItem", action="http_error", times=None))
    blipping = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    result = stack.event_source(blipping).poll_once(wait_seconds=2)
    assert (result.received, result.failed) == (1, 1)
    proxy.clear_rules()  # DynamoDB is fine again

    # Lambda hands the receipt back whenever SQS makes it visible again. Within the grace?
    healthy = stack.app(instant_emulator.base_url)
    sqs = client("sqs", stack.endpoint)
    back = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=10).get("Messages", [])
    print(f"receipt visible again within 10 s of failing: {bool(back)}")
    if back:
        record = {
            "messageId": back[0]["MessageId"],
            "receiptHandle": back[0]["ReceiptHandle"],
            "body": back[0]["Body"],
            "eventSource": "aws:sqs",
        }
        healthy.handle({"Records": [record]}, context())

    # t0+1020 s: M1's redelivery (its visibility timeout started before the receipt's).
    stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT)).handle(m1, context())

    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1

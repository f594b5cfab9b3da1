"""A receipt that arrived in time is dead-lettered 20 s later, inside the lease's 60 s grace,
and the event is published a second time.

The first round's fix postpones a receipt that could not be recorded by
RECEIPT_RETRY_SECONDS (5 s). But every retry is another SQS receive, and the CancelQueue's
redrive policy has maxReceiveCount 5: five receives 5 s apart use up the message in ~20-25 s,
while the protocol counts on the receipt being able to mark the event for the whole grace
(RECEIPT_GRACE_SECONDS = 60 s after the publisher's deadline, i.e. up to ~180 s). A DynamoDB
blip (throttling of the hot item/partition) of ~25 s is enough:

  t0      M1 (cancel) publishes, the container dies before the mark (DyingSession(True)).
  t0+1s   the receipt arrives; BatchGetItem fails (SDK retries exhausted) -> postponed 5 s.
  ...     receives 2..5 fail the same way, 5 s apart; at ~t0+25 s SQS moves it to the DLQ.
  t0+30s  DynamoDB is healthy again, long before the lease ends.
  t0+1020 M1 is redelivered, finds the claim lapsed, publishes `Batch Cancelled` again.
The receipt was handed to the function within a second of publication.

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import time

import pytest

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, DyingSession, LocalAws, context, later, sqs_event

VISIBILITY_TIMEOUT = 1020


def test_a_receipt_survives_a_dynamodb_blip_shorter_than_the_grace(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    stack = local_aws.create_stack(visibility_timeout=VISIBILITY_TIMEOUT)
    batch = instant_emulator.seed(status="in_progress")
    m1 = sqs_event(batch["id"])
    started = time.monotonic()
    with pytest.raises(Crash):
        stack.app(instant_emulator.base_url, session=DyingSession(published=True)).handle(
            m1, context()
        )
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1

    # DynamoDB's BatchGetItem fails for ~12 s; Lambda keeps handing the receipt over.
    proxy.add_rule(Rule(operation="DynamoDB.BatchGetItem", action="http_error", times=None))
    blipping = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    source = stack.event_source(blipping)
    receives = 0
    while time.monotonic() - started < 12:
        receives += source.poll_once(wait_seconds=1).received
    proxy.clear_rules()
    blip = time.monotonic() - started
    dead = stack.dead_letters()
    print(f"receipt handed over {receives} times in {blip:.0f} s; in the DLQ: {len(dead)}")

    # DynamoDB is healthy well within the grace: the receipt (if still queued) marks the event.
    healthy = stack.app(instant_emulator.base_url)
    end = time.monotonic() + 25  # its next receive comes 20 s after the last failed one
    while time.monotonic() < end and "pending_events" in (stack.item(batch["id"]) or {}):
        stack.event_source(healthy).poll_once(wait_seconds=1)
    dead = stack.dead_letters()
    print(
        "after DynamoDB recovered: receipts in the CancelQueue's DLQ:",
        [m["Body"][:60] for m in dead],
    )

    # The publisher's message comes back after its visibility timeout.
    stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT)).handle(m1, context())
    published = len(stack.events_of("Batch Cancelled", batch["id"]))
    print("Batch Cancelled published", published, "times")
    assert published == 1, "published twice although its receipt arrived within a second"

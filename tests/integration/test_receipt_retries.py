"""A receipt that cannot be recorded (DynamoDB failing) comes back in time to keep its event
from being published twice.

The sequence each test starts from: a publisher dies after the bus accepted its event and
before marking it announced, so only the event's receipt can keep the publisher's redelivery
(after the queue's visibility timeout, past the lease) from publishing it again. Each was
found by an adversarial review of the exactly-once work and failed before its fix:
- a failed receipt came back only after the 1,020 s visibility timeout, too late;
- its retries then used its five receives in ~25 s, and it was dead-lettered during a short
  outage, long before the lease ended;
- with any spacing, five receives could end before a long outage did: a receipt now goes on
  as a fresh copy after its fourth receive (the review's 100 s outage is scaled to 35 s here:
  longer than five receives 5 s apart, so it fails without the copies).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, DyingSession, LocalAws, Stack, client, context, later, sqs_event

VISIBILITY_TIMEOUT = 1020  # template.yaml's CancelQueue


def publisher_dies_after_publishing(
    stack: Stack, emulator: OpenAIEmulator, message: dict[str, Any], batch_id: str
) -> None:
    """The publisher of `message` dies between the accepted PutEvents and the mark: the event
    is out, its receipt on the queue, the record still owes it."""
    with pytest.raises(Crash):
        stack.app(emulator.base_url, session=DyingSession(published=True)).handle(
            message, context()
        )
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1


def test_a_receipt_that_arrived_in_time_prevents_the_second_publication(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    stack = local_aws.create_stack(visibility_timeout=VISIBILITY_TIMEOUT)
    batch = instant_emulator.seed(status="in_progress")
    m1 = sqs_event(batch["id"])

    # t0: the publisher dies between the accepted PutEvents and the mark.
    publisher_dies_after_publishing(stack, instant_emulator, m1, batch["id"])

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


def test_a_receipt_survives_a_dynamodb_blip_shorter_than_the_grace(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    stack = local_aws.create_stack(visibility_timeout=VISIBILITY_TIMEOUT)
    batch = instant_emulator.seed(status="in_progress")
    m1 = sqs_event(batch["id"])
    started = time.monotonic()
    publisher_dies_after_publishing(stack, instant_emulator, m1, batch["id"])

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


BLIP_SECONDS = 35


LEASE_SECONDS = 120 + 60  # template Timeout + RECEIPT_GRACE_SECONDS


def test_a_receipt_survives_a_dynamodb_outage_shorter_than_the_lease(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    stack = local_aws.create_stack(visibility_timeout=VISIBILITY_TIMEOUT)
    batch = instant_emulator.seed(status="in_progress")
    m1 = sqs_event(batch["id"])
    started = time.monotonic()
    with pytest.raises(Crash):
        stack.app(instant_emulator.base_url, session=DyingSession(published=True)).handle(
            m1, context(120)
        )
    item = stack.item(batch["id"]) or {}
    claim = item.get("claim Batch Cancelled", {})
    print("claim expires in", float(claim.get("expires", 0)) - time.time(), "s")
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1

    proxy.add_rule(Rule(operation="DynamoDB.BatchGetItem", action="http_error", times=None))
    blipping = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    source = stack.event_source(blipping)
    receives = 0
    while time.monotonic() - started < BLIP_SECONDS:
        receives += source.poll_once(wait_seconds=1).received
    proxy.clear_rules()
    print(f"receipt handed over {receives} times during the {BLIP_SECONDS} s outage")

    # DynamoDB is healthy; the lease still has ~80 s to run: the receipt (if queued) marks it.
    healthy = stack.app(instant_emulator.base_url)
    while time.monotonic() - started < LEASE_SECONDS - 10 and "pending_events" in (
        stack.item(batch["id"]) or {}
    ):
        stack.event_source(healthy).poll_once(wait_seconds=1)
    dead = stack.dead_letters()
    print(
        f"at t0+{time.monotonic() - started:.0f} s (lease ends ~t0+{LEASE_SECONDS}):"
        f" still owed: {'pending_events' in (stack.item(batch['id']) or {})};"
        f" receipts in the DLQ: {[m['Body'][:50] for m in dead]}"
    )

    stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT)).handle(m1, context())
    published = len(stack.events_of("Batch Cancelled", batch["id"]))
    print("Batch Cancelled published", published, "times")
    assert published == 1, "published twice although its receipt arrived within a second"

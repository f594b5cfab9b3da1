"""A receipt outlives a DynamoDB outage longer than its five receives: it goes on as a fresh
copy instead of being dead-lettered while its publisher's claim is still live.

Found by an adversarial review of the exactly-once work: its script (a 100 s outage, against a
schedule of postponements that ran out after ~95 s) failed before the fix and passes now. This
one is scaled to a 35 s outage: longer than the five receives, 5 s apart, that the queue allows
before its DLQ, so it fails without the fresh copies.

  t0       M1 publishes `Batch Cancelled` and dies before the mark (DyingSession(published=True)).
  t0+1     the receipt arrives; BatchGetItem fails on every receive for 35 s; after its fourth
           receive the receipt goes on as a fresh copy.
  t0+35    DynamoDB is healthy again; the receipt (a copy) marks the event announced.
  t0+1020  M1 is redelivered and finds nothing owed: published once.
"""

from __future__ import annotations

import time

import pytest

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, DyingSession, LocalAws, context, later, sqs_event

VISIBILITY_TIMEOUT = 1020
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

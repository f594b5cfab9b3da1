"""A receipt proves a publication only if it brings back the token of the claim the event is
held under (`publication_id` in the event's detail). Whoever may write to the queue or invoke
the function can send a body shaped like a receipt, or a whole SQS-shaped event: neither the
bus policy nor the entry point can tell it from the bus's copy. Without a token check such a
receipt marked an unpublished event announced, and the event was lost (found by the
adversarial review of issue 11: both tests below failed before the check)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from batch_canceller.announce_protocol import Claim
from batch_canceller.event_ledger import EventLedger
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import EVENT_SOURCE, Stack, client, context, later, sqs_event

PAST_THE_LEASE = 121
CANCELLED = "Batch Cancelled"


def receipt_body(batch_id: str, publication_id: str | None = None) -> str:
    detail: dict[str, Any] = {"batch_id": batch_id, "status": "cancelled"}
    if publication_id is not None:
        detail["publication_id"] = publication_id
    return json.dumps(
        {
            "version": "0",
            "id": "forged",
            "detail-type": CANCELLED,
            "source": EVENT_SOURCE,
            "time": datetime.now(UTC).isoformat(),
            "detail": detail,
        }
    )


def owe_an_unpublished_event(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> tuple[str, dict[str, Any]]:
    """A cancel while PutEvents answers 500: the record owes the event, nothing was published."""
    batch = emulator.seed(status="in_progress")["id"]
    proxy.add_rule(Rule(operation="Events.PutEvents", action="http_error", status=500, times=None))
    event = sqs_event(batch)
    stack.app(emulator.base_url, aws_endpoint=proxy.url).handle(event, context())
    proxy.clear_rules()
    assert (stack.item(batch) or {}).get("pending_events") == {CANCELLED}
    return batch, event


def test_a_receipt_nobody_published_does_not_mark_the_event_announced(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN a record owing an event nobody published
    batch, event = owe_an_unpublished_event(stack, instant_emulator, proxy)
    claim = (stack.item(batch) or {})[f"claim {CANCELLED}"]
    message_id = str(claim["token"]).split("/")[0]

    # WHEN receipts arrive that no bus delivered: one without a publication ID (as a direct
    # invoke of an SQS-shaped event, or SendMessage, can send), one with the right message ID
    # but a guessed nonce
    forged = sqs_event(
        receipt_body(batch), receipt_body(batch, f"{message_id}/000000000000"), ids=["f1", "f2"]
    )
    answer = stack.app(instant_emulator.base_url).handle(forged, context())

    # THEN both are handled (not retried) and change nothing
    assert answer == {"batchItemFailures": []}
    item = stack.item(batch) or {}
    assert item.get("pending_events") == {CANCELLED}
    assert CANCELLED not in item.get("announced_events", set())

    # AND the real message, back after its lease, publishes the event once
    stack.app(instant_emulator.base_url, clock=later(PAST_THE_LEASE)).handle(event, context())
    assert len(stack.events_of(CANCELLED, batch)) == 1


def test_the_bus_copy_of_an_event_marks_it_announced(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN an event published (accepted by the bus) whose publisher never marked it
    batch = instant_emulator.seed(status="in_progress")["id"]
    proxy.add_rule(Rule(operation="Events.PutEvents", action="forward_then_drop", times=1))
    stack.app(instant_emulator.base_url, aws_endpoint=proxy.url).handle(sqs_event(batch), context())
    (published,) = stack.events_of(CANCELLED, batch)
    assert (stack.item(batch) or {}).get("pending_events") == {CANCELLED}

    # WHEN its receipt (the bus's copy, which carries the claim's token) is handled
    (receipt,) = stack.drain_receipts()
    assert receipt["detail"]["publication_id"] == published["detail"]["publication_id"]
    stack.app(instant_emulator.base_url).handle(sqs_event(json.dumps(receipt)), context())

    # THEN the event is announced
    item = stack.item(batch) or {}
    assert item.get("announced_events") == {CANCELLED}
    assert not item.get("pending_events")


def test_a_receipt_of_an_earlier_claim_does_not_settle_the_claim_that_took_it_over(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """After a takeover, the event is the new claim's to publish: an earlier claim's receipt
    (a copy retried for a long DynamoDB outage) arriving then is the late receipt the protocol
    allows a duplicate for; it must not stand in for the new claim's own publication."""
    batch, _ = owe_an_unpublished_event(stack, instant_emulator, proxy)
    earlier = str((stack.item(batch) or {})[f"claim {CANCELLED}"]["token"])
    # GIVEN the earlier claim lapsed and was taken over by another delivery
    after_the_lease = later(PAST_THE_LEASE)
    ledger = EventLedger(client("dynamodb", stack.endpoint), stack.table_name, after_the_lease)
    takeover = Claim("msg-2/abcdefabcdef", after_the_lease().timestamp() + 60)
    assert ledger.claim(batch, CANCELLED, takeover) is None  # won
    app = stack.app(instant_emulator.base_url, clock=after_the_lease)

    # WHEN the earlier claim's receipt comes
    answer = app.handle(sqs_event(receipt_body(batch, earlier)), context())

    # THEN it is handled but marks nothing
    assert answer == {"batchItemFailures": []}
    assert (stack.item(batch) or {}).get("pending_events") == {CANCELLED}

    # AND the receipt of the claim that took over marks the event
    app.handle(sqs_event(receipt_body(batch, takeover.token)), context())
    assert (stack.item(batch) or {}).get("announced_events") == {CANCELLED}

"""The claim token is `<message id>/<nonce>` with no bound on the message ID, while a receipt's
`publication_id` is read with MAX_PUBLICATION_ID = 128. An event published under a token longer
than 128 characters has a receipt the parser rejects: it is dead-lettered as invalid and never
marks the event, so the protocol falls back to a takeover, which publishes the event a second
time although its receipt arrived at once.

The message ID of an EventBridge-shaped direct invoke is the event's `id`, taken as given
(inbound.from_eventbridge); 116+ characters are enough. Found by the third adversarial review of
issue 11; the test failed before its fix.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, DyingSession, Stack, context, later

LEASE_SECONDS = 60 + 60 + 5  # the invocation's 60 s + RECEIPT_GRACE_SECONDS, and a margin


def test_a_legitimate_receipt_marks_its_event_whatever_the_message_id(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    """Sequence: a `Batch Cancel Requested` event invoked directly (a rule of the operator's
    own) with an `id` of 120 characters cancels a batch; the process dies right after the bus
    accepted Batch Cancelled (before the mark). Its receipt reaches the queue and is handled
    at once by a healthy invocation: rejected ("'detail.publication_id' ... 128") and sent to
    the DLQ; the event stays owed. The event's retry (Lambda's async retry) after the lease
    takes the lapsed claim over and publishes again. Expected: the receipt marks the event,
    one Batch Cancelled."""
    batch_id = instant_emulator.seed(status="in_progress")["id"]
    event = {
        "id": "evt-" + "x" * 116,
        "source": "ops.tooling",
        "detail-type": "Batch Cancel Requested",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {"batch_id": batch_id},
    }
    with pytest.raises(Crash):
        stack.app(instant_emulator.base_url, session=DyingSession(published=True)).handle(
            event, context()
        )
    [published] = stack.events_of("Batch Cancelled", batch_id)
    print("publication_id length:", len(published["detail"]["publication_id"]))

    healthy = stack.app(instant_emulator.base_url)
    result = stack.event_source(healthy).poll_once(wait_seconds=3)
    print("receipt handled:", result)
    dead = stack.dead_letters()
    print("DLQ reasons:", [m["MessageAttributes"]["error_reason"]["StringValue"] for m in dead])
    item = stack.item(batch_id) or {}
    print("pending:", item.get("pending_events"), "announced:", item.get("announced_events"))

    # Lambda retries the async invoke; by the lease's end its claim has lapsed.
    stack.app(instant_emulator.base_url, clock=later(LEASE_SECONDS)).handle(event, context())
    count = len(stack.events_of("Batch Cancelled", batch_id))
    print("Batch Cancelled published", count, "times")
    assert count == 1, "published twice: its receipt was dead-lettered instead of marking it"

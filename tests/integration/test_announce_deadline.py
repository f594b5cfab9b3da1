"""The announce phase fits in the invocation (found by an adversarial review).

The work phase stops starting items when the usable time (remaining - 5 s reserve) runs out,
but everything after it is unbounded: `_send_checks`, then `Announcer.announce` (one claim or
none, one PutEvents per ten events, one `mark_announced` UpdateItem per event), then one
ChangeMessageVisibility per postponed message. None of them looks at the deadline (only a
*resend* of a refused entry does). So the 5 s reserve has to cover the announce phase of every
item the work phase finished, however many: with batches that end at once (cancel -> 409 ->
retrieve -> completed, or an instant `cancelled`), each finished item owes one event, and the
mark write alone is about half the cost of the item's own write. An invocation whose work
phase ran for T seconds needs roughly T/2 more to announce: past the deadline as soon as the
work phase runs longer than ~10 s. Lambda then kills it: the whole batch (10 messages of up to
1,000 IDs) fails, every message comes back after the visibility timeout, and events that were
published but not marked wait on their receipts (the protocol's one duplicate window).

Here (the review used 10 x 1,000 IDs and 30 s): 3 messages x 1,000 IDs of batches the emulator
cancels at once, a 12 s invocation, no faults: the handler must answer before its deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, failed_ids, sqs_event

INVOCATION_SECONDS = 12.0


def test_the_announce_phase_fits_in_the_deadline_reserve(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    ids = [instant_emulator.seed(status="in_progress")["id"] for _ in range(3_000)]
    bodies = [json.dumps({"batch_ids": ids[i : i + 1000]}) for i in range(0, len(ids), 1000)]
    app = stack.app(instant_emulator.base_url, MAX_IN_FLIGHT="32")
    ctx = context(INVOCATION_SECONDS)

    started = time.monotonic()
    answer_event = sqs_event(*bodies)
    answer = app.handle(answer_event, ctx)
    took = time.monotonic() - started

    announced = len(stack.events_of("Batch Cancelled"))
    print(
        f"took {took:.1f} s of {INVOCATION_SECONDS}; {announced} events; "
        f"{len(failed_ids(answer))} messages failed; tally {dict(app.tally.counts)}"
    )
    assert took < INVOCATION_SECONDS, (
        f"the invocation took {took:.1f} s of its {INVOCATION_SECONDS} s "
        f"({announced} events announced after the work phase)"
    )
    # AND nothing was dropped: a batch was announced once, or its message comes back, or it
    # is in a command queued for the part not started
    counts = Counter(e["detail"]["batch_id"] for e in stack.events_of("Batch Cancelled"))
    assert set(counts.values()) <= {1}
    queued = {i for body in stack.drain_queue() for i in body.get("batch_ids", [])}
    for record, body in zip(answer_event["Records"], bodies, strict=True):
        left = set(json.loads(body)["batch_ids"]) - set(counts) - queued
        assert not left or record["messageId"] in failed_ids(answer)

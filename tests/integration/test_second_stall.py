"""A cancel request after a *second* stall gets no chain: the batch is never followed again.

`mark_stalled` owes `Batch Cancel Stalled` only if it was never owed nor announced (one per
batch), and it is the only write that sets `stalled_watch`. `_stalled_chain` recognises a
stalled chain only by `stalled_watch == watch_id`. So:

1. cancel #1 -> chain W1; W1 times out; its check marks the stall (stalled_watch = W1), the
   stall is announced. Chain W1 ends (as designed).
2. cancel #2 (a re-request, e.g. the recurring sweep) -> `_stalled_chain` is true -> chain W2
   (start_watch). W2 also times out: its check calls `mark_stalled`, whose condition fails
   (stall already announced), so stalled_watch stays W1. Chain W2 ends, silently.
3. cancel #3 -> `_stalled_chain` is false (stalled_watch W1 != watch_id W2): no new chain; its
   nudge is check W2#k+1 with W2's old `since`: timed out on arrival, `mark_stalled` no-op,
   ends. Nothing follows the batch although a cancel was accepted after the stall; when it
   turns `cancelled` at the API, `Batch Cancelled` is never published (lost outcome event).

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import json
import time

from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, sqs_event

POLL = {
    "POLL_INITIAL_DELAY_SECONDS": "0",
    "POLL_MAX_DELAY_SECONDS": "0",
    "POLL_TIMEOUT_SECONDS": "2",
}


def checks(stack: Stack) -> list[dict]:
    return [body for body in stack.drain_queue() if "check" in body]


def cancel(app, stack, batch_id, reason):
    app.handle(sqs_event(json.dumps({"batch_ids": [batch_id], "reason": reason})), context())
    return checks(stack)


def test_a_cancel_after_the_second_stall_is_followed(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch_id = slow_emulator.seed(status="in_progress")["id"]
    app = stack.app(slow_emulator.base_url, **POLL)

    # Chain W1 stalls; the stall is announced.
    [check] = cancel(app, stack, batch_id, "first")
    time.sleep(2.2)
    app.handle(sqs_event(json.dumps(check)), context())
    assert checks(stack) == []
    assert len(stack.events_of("Batch Cancel Stalled", batch_id)) == 1

    # Re-request #2: a new chain W2 (the fixed behaviour), which stalls in turn.
    [check] = cancel(app, stack, batch_id, "second")
    time.sleep(2.2)
    app.handle(sqs_event(json.dumps(check)), context())
    assert checks(stack) == []

    # Re-request #3, accepted while the batch is still `cancelling`.
    nudges = cancel(app, stack, batch_id, "third")
    print("cancel #3 sends:", nudges, "| record watch:", stack.item(batch_id)["watch_id"])
    for nudge in nudges:
        app.handle(sqs_event(json.dumps(nudge)), context())
    following = checks(stack)
    print("after cancel #3's check: checks on the queue:", following)

    # The batch is then cancelled at the API; whatever follows it should see that.
    slow_emulator.seed(batch_id=batch_id, status="cancelled")
    for _ in range(5):
        for body in following:
            app.handle(sqs_event(json.dumps(body)), context())
        following = checks(stack)
    item = stack.item(batch_id)
    print(
        "record status:",
        item["status"],
        "| Batch Cancelled events:",
        len(stack.events_of("Batch Cancelled", batch_id)),
    )
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1, (
        "a cancel accepted after the second stall left the batch unfollowed:"
        " its cancellation is never announced"
    )

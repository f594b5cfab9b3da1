"""A cancel accepted after the chain timed out, but before its stalling check arrived, leaves
the batch unfollowed (the first round's "re-request while a stall was owed" fix, one step
earlier).

`_stalled_chain` asks only whether the stall is *recorded* (owed or announced with
`stalled_watch == watch_id`); it never asks whether the chain has timed out. So:

1. cancel #1 -> chain W1, check W1#1 on the queue (delayed until the timeout, as
   `delay_before` caps it, plus queue/batching latency).
2. W1's timeout passes. Before W1#1 is handled, cancel #2 arrives: stall not recorded yet ->
   no new chain; its nudge is W1#1 with W1's `since` (born timed out).
3. W1#1 takes step 1, is timed out, marks and announces the stall; chain ends.
4. The nudge W1#1 (other token) is superseded. Nothing follows the batch although a cancel was
   accepted after the chain's timeout; `Batch Cancelled` is never published when it ends.
Had cancel #2 come a second later (stall recorded), it would have got a fresh chain.

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


def test_a_cancel_after_the_timeout_but_before_the_stall_is_recorded_is_followed(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch_id = slow_emulator.seed(status="in_progress")["id"]
    app = stack.app(slow_emulator.base_url, **POLL)
    app.handle(sqs_event(batch_id), context())
    [w1_check] = checks(stack)
    time.sleep(2.2)  # W1 has timed out; its check has not been handled yet

    app.handle(sqs_event(json.dumps({"batch_ids": [batch_id], "reason": "again"})), context())
    nudges = checks(stack)
    print("cancel #2 nudges:", nudges)

    app.handle(sqs_event(json.dumps(w1_check)), context())  # marks + announces the stall
    for nudge in nudges:
        app.handle(sqs_event(json.dumps(nudge)), context())
    following = checks(stack)
    print(
        "stall events:",
        len(stack.events_of("Batch Cancel Stalled", batch_id)),
        "| checks left:",
        following,
    )

    slow_emulator.seed(batch_id=batch_id, status="cancelled")
    for _ in range(5):
        for body in following:
            app.handle(sqs_event(json.dumps(body)), context())
        following = checks(stack)
    print("record:", stack.item(batch_id)["status"])
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1, (
        "cancel #2 (accepted after W1 timed out) left the batch unfollowed"
    )

"""A cancel accepted while a stall is owed keeps the batch followed (found by an adversarial review).
is never announced, although a cancel for it was accepted after the stall).

`WorkRunner._cancel` restarts the watch's clock only when `Batch Cancel Stalled` is already in
`announced_events`. While the stall is still *owed* (claimed and being published, its PutEvents
refused or of unknown outcome, waiting for its lease or receipt), a new cancel command writes a
new chain whose `watch_since` is kept (`if_not_exists`) from the old chain, so its check 1 is
born timed out: it calls `mark_stalled` (a no-op: the stall is already owed) and ends the
chain. The batch stays `cancelling` in the record with nothing following it; when it becomes
`cancelled` at the API nobody looks, and no event ever says so. Had the same command arrived a
moment later (stall announced), the clock would have restarted and the chain gone on. A
recurring sweep re-queues cancels for `cancelling` batches, so such a re-request is routine.

Sequence: chain W1 times out; its check marks the stall, PutEvents refuses it (released, still
owed); a second cancel command for the batch arrives (chain W2, old watch_since); the stall is
then announced by the check's redelivery; W2's check 1 arrives, is timed out, ends. Nothing is
left on the queue for the batch, which then turns `cancelled`.
"""

from __future__ import annotations

import json
import time

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, sqs_event

POLL = {
    "POLL_INITIAL_DELAY_SECONDS": "0",
    "POLL_MAX_DELAY_SECONDS": "0",
    "POLL_TIMEOUT_SECONDS": "2",
}


def checks(stack: Stack) -> list[dict]:
    return [body for body in stack.drain_queue() if "check" in body]


def test_a_cancel_accepted_while_the_stall_is_owed_keeps_the_batch_followed(
    stack: Stack, slow_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    batch_id = slow_emulator.seed(status="in_progress")["id"]
    app = stack.app(slow_emulator.base_url, **POLL)
    app.handle(sqs_event(batch_id), context())
    [check_w1] = checks(stack)
    time.sleep(2.2)  # chain W1 times out

    # W1's check marks the stall; the bus refuses the event (released, still owed).
    proxy.add_rule(Rule(operation="Events.PutEvents", action="http_error", status=400, times=None))
    refusing = stack.app(slow_emulator.base_url, aws_endpoint=proxy.url, **POLL)
    refusing.handle(sqs_event(json.dumps(check_w1), ids=["check-w1"]), context())
    assert "Batch Cancel Stalled" in stack.item(batch_id)["pending_events"]
    proxy.clear_rules()

    # The batch is asked again while the stall is owed.
    app.handle(sqs_event(json.dumps({"batch_ids": [batch_id], "reason": "again"})), context())
    [check_w2] = checks(stack)

    # The stall is announced by W1's check coming back (superseded now, announces what it sees).
    app.handle(sqs_event(json.dumps(check_w1), ids=["check-w1"]), context())
    assert len(stack.events_of("Batch Cancel Stalled", batch_id)) == 1

    # W2's first check arrives.
    app.handle(sqs_event(json.dumps(check_w2)), context())
    following = checks(stack)
    print("W2 check 1 since:", check_w2["check"]["since"], "-> checks left:", following)

    # The cancel accepted after the stall restarted the watch: something still follows the batch.
    assert following, "no status check follows the batch: its cancellation will never be announced"

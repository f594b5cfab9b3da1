"""A cancel request after a watch stalled or timed out keeps the batch followed.

Each sequence was found by an adversarial review of the exactly-once work, and its test failed
before the fix (a chain that has timed out is now replaced by the next cancel request, its
clock restarted):
- the stall is still owed (its PutEvents refused) when the batch is asked again: the new chain
  kept the old chain's clock, so its first check was born timed out and ended the chain;
- a second stall: the stall is announced once per batch, so the second chain's stall wrote
  nothing, and the third request did not recognise that chain as stalled;
- the chain's timeout has passed but its stalling check has not yet arrived: the request
  nudged the timed-out chain, which then stalled and ended.
In each case the batch was left `cancelling` with nothing following it, and its
`Batch Cancelled` was never published.
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

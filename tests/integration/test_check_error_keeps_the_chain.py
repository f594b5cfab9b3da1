"""(b) One 4xx answer to a status check ends the chain of a batch that is still `cancelling`:
its `Batch Cancelled` is never published, and if `Batch Cancel Failed` was already announced
the chain ends with no event at all.

`WorkRunner._check` sends any non-2xx answer to `_api_error`, which treats everything but
401/403 as the *cancel* having failed permanently: it records `last_error`, owes
`Batch Cancel Failed` (at most once per batch) and returns `cancel_failed` with no next check.
The cancel had succeeded (the record and the API say `cancelling`); a retrieve that answered
404/400 once (a gateway routing blip) says nothing about the batch. Afterwards the record says
`cancelling` forever, no check is queued and no message will send one.

Sequence: cancel 1 is refused (400 once) -> Batch Cancel Failed announced; cancel 2 succeeds
-> `cancelling`, check 1 queued; check 1's retrieve answers 404 once; the batch later reaches
`cancelled` at the API.

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

from infra.openai_emulator import OpenAIEmulator
from infra.openai_emulator.faults import Fault
from tests.support import Stack, context, sqs_event


def test_a_4xx_on_a_status_check_does_not_end_the_chain(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch = slow_emulator.seed(status="in_progress")["id"]
    app = stack.app(slow_emulator.base_url)
    slow_emulator.inject(Fault(kind="status", status=400, method="POST", times=1))
    app.handle(sqs_event(batch), context())
    assert len(stack.events_of("Batch Cancel Failed", batch)) == 1

    app.handle(sqs_event(batch), context())  # the re-request succeeds
    assert (stack.item(batch) or {}).get("status") == "cancelling"
    import time

    time.sleep(1.5)  # the first check is delayed POLL_INITIAL_DELAY_SECONDS (1)
    checks = [b for b in stack.drain_queue() if "check" in b]
    assert checks, "cancel 2 queued a status check"

    slow_emulator.inject(Fault(kind="status", status=404, method="GET", times=1))
    import json

    answer = app.handle(sqs_event(json.dumps(checks[0])), context())
    item = stack.item(batch) or {}
    time.sleep(2.5)
    queued = stack.drain_queue()
    print(
        "check answered:",
        answer,
        "| record status:",
        item.get("status"),
        "| queued after the check:",
        queued,
        "| events:",
        [e["detail-type"] for e in stack.events()],
    )
    assert item.get("status") != "cancelling" or any("check" in b for b in queued), (
        "the batch is `cancelling` with no status check queued and no message to send one"
    )

"""The rest of a `cancel_at` command that the scheduler itself requeues after its time is
dead-lettered as "in the past", and those batches are never cancelled.

`CancellationScheduler.run` validates `cancel_at > now` once, at the start, then creates one
schedule per batch; when time runs short it requeues the rest as a new `cancel_at` command.
That requeue is *sent* (SQS SentTimestamp) after the validation, and can be sent after
`cancel_at` itself (slow CreateSchedule calls, a near `cancel_at`). On arrival `_due` requires
`sent_at < cancel_at`, so the requeued command is "not due", goes back to the scheduler,
whose `_validated_time` raises InvalidInput ("in the past"), and the app dead-letters it.
The same happens with no slowness at all when SQS's clock is ahead of the function's.

Sequence: cancel_at = now + ~2-3 s for three batches; CreateSchedule takes 2 s; the invocation
(10.5 s) creates two schedules, then requeues the third batch at ~4 s (after cancel_at).

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"


def test_the_requeued_rest_of_a_cancel_at_command_is_not_dead_lettered(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    ids = [emulator.seed(status="in_progress")["id"] for _ in range(3)]
    settings = {"SCHEDULER_ROLE_ARN": ROLE, "SCHEDULE_GROUP_NAME": stack.table_name}
    app = stack.app(emulator.base_url, aws_endpoint=proxy.url, **settings)
    at = datetime.fromtimestamp(math.ceil(time.time()) + 2, UTC)
    proxy.add_rule(
        Rule(operation="Scheduler.CreateSchedule", action="delay", delay_seconds=2.0, times=None)
    )
    answer = app.handle(
        sqs_event(json.dumps({"batch_ids": ids, "cancel_at": at.isoformat()})), context(10.5)
    )
    print("first handling:", answer, "| cancel_at", at.isoformat(), "| now", datetime.now(UTC))
    proxy.clear_rules()

    # The requeued rest arrives (after cancel_at); Lambda's event source hands it over.
    time.sleep(max(0.0, at.timestamp() - time.time()) + 0.5)
    source = stack.event_source(app)
    for _ in range(3):
        source.poll_once(wait_seconds=1)

    dead = stack.dead_letters()
    reasons = [m["MessageAttributes"]["error_reason"]["StringValue"] for m in dead]
    print("DLQ:", reasons, "| statuses:", [emulator.get(b)["status"] for b in ids])
    assert dead == [], f"the scheduler's own requeue was dead-lettered: {reasons}"


def test_a_cancel_at_less_than_a_second_ahead_is_not_dead_lettered(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    """`_due` compares the exact `cancel_at` (in the future: not due), then `_validated_time`
    truncates it to the second (`replace(microsecond=0)`) and finds *that* in the past:
    a command whose `cancel_at` is 0.x s ahead is dead-lettered as invalid, not cancelled."""
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    batch_id = emulator.seed(status="in_progress")["id"]
    settings = {"SCHEDULER_ROLE_ARN": ROLE, "SCHEDULE_GROUP_NAME": stack.table_name}
    app = stack.app(emulator.base_url, **settings)
    while time.time() % 1 > 0.3:
        time.sleep(0.02)
    at = datetime.fromtimestamp(math.floor(time.time()) + 0.9, UTC)
    app.handle(
        sqs_event(json.dumps({"batch_id": batch_id, "cancel_at": at.isoformat()})), context()
    )
    dead = stack.dead_letters()
    reasons = [m["MessageAttributes"]["error_reason"]["StringValue"] for m in dead]
    print(
        "cancel_at", at.isoformat(), "DLQ:", reasons, "| status:", emulator.get(batch_id)["status"]
    )
    assert dead == [], f"a cancel_at still in the future was dead-lettered: {reasons}"

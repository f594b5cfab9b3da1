"""A cancel_at command answers before the invocation's deadline (found by an adversarial review).

`CancellationScheduler.run` takes the invocation's `deadline` and never looks at it: for each of
up to 1,000 IDs of a `cancel_at` command it makes CreateSchedule + ListSchedules (+ deletes),
one after the other. It runs inside `_accept`, before any deadline-aware work. With 1,000 IDs
and ~60 ms per Scheduler call the loop needs ~120 s, Lambda's whole Timeout; Lambda then kills
the invocation, the whole SQS batch fails, and the retry starts again from the first ID (each
CreateSchedule now a ConflictException, still one call each), so the same overrun repeats until
maxReceiveCount dead-letters the valid command (and the other messages of each batch retry too).

Here, scaled down: 100 IDs, each Scheduler call 50 ms slower through the fault proxy, and an
invocation of 8 s. The handler returns well after its deadline.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"
INVOCATION_SECONDS = 8.0


def test_a_cancel_at_command_does_not_run_past_the_invocation_deadline(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    proxy.add_rule(Rule(operation="Scheduler.*", action="delay", delay_seconds=0.05, times=None))
    app = stack.app(
        emulator.base_url,
        aws_endpoint=proxy.url,
        SCHEDULER_ROLE_ARN=ROLE,
        SCHEDULE_GROUP_NAME=stack.table_name,
    )
    when = (datetime.now(UTC) + timedelta(hours=6)).replace(microsecond=0).isoformat()
    body = json.dumps({"batch_ids": [f"batch_{i:04d}" for i in range(100)], "cancel_at": when})
    ctx = context(INVOCATION_SECONDS)

    started = time.monotonic()
    app.handle(sqs_event(body), ctx)
    took = time.monotonic() - started

    # Lambda would have stopped it at the deadline: the function must answer before then.
    assert ctx.get_remaining_time_in_millis() > 0, (
        f"the invocation took {took:.1f} s of its {INVOCATION_SECONDS} s"
    )

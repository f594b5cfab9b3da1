"""A cancel_at command handled after its time is cancelled, not dead-lettered (found by an
adversarial review).

`CancellationScheduler._validated_time` raises InvalidInput when `cancel_at <= now`, checked
when the message is *handled*, not when it was sent. A `cancel_at` command that was valid when
it was queued but is handled after its time (one failed attempt: any Scheduler error makes
`_run_side` fail the message, and it comes back after the 1,020 s visibility timeout; or just
a queue backlog) is judged "in the past", sent to the DLQ as invalid input, and the batch is
neither scheduled nor cancelled: the cancellation the user asked for at T silently never
happens. (The README's operator advice for DLQ'd invalid input is to delete it.)

Sequence: cancel_at = now + 3 s; the first handling meets a Scheduler error (every SDK attempt
of CreateSchedule fails) and fails the message; its redelivery comes after cancel_at.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, failed_ids, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"


def test_a_cancel_at_command_redelivered_after_its_time_still_cancels(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    batch_id = emulator.seed(status="in_progress")["id"]
    settings = {"SCHEDULER_ROLE_ARN": ROLE, "SCHEDULE_GROUP_NAME": stack.table_name}
    app = stack.app(emulator.base_url, aws_endpoint=proxy.url, **settings)
    when = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0).isoformat()
    event = sqs_event(json.dumps({"batch_id": batch_id, "cancel_at": when}))

    # First handling: the Scheduler is unavailable; the message fails and will come back.
    proxy.add_rule(Rule(operation="Scheduler.CreateSchedule", action="http_error", times=None))
    assert failed_ids(app.handle(event, context())) == {event["Records"][0]["messageId"]}
    proxy.clear_rules()

    # It comes back after its cancel_at (visibility timeout, backlog).
    time.sleep(4)
    app.handle(event, context())

    dead = stack.dead_letters()
    reasons = [m["MessageAttributes"]["error_reason"]["StringValue"] for m in dead]
    print("DLQ:", reasons, "| batch at the API:", emulator.get(batch_id)["status"])
    assert dead == [], f"a valid cancel_at command was dead-lettered: {reasons}"
    # AND the cancellation it asked for happened, now that it was due
    assert emulator.get(batch_id)["status"] in ("cancelling", "cancelled")

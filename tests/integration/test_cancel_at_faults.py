"""Scheduled cancellations (`cancel_at`) under slow calls, retries and late deliveries.

Each sequence was found by an adversarial review of the exactly-once work, and its test failed
before the fix:
- a command with many IDs made Scheduler calls one after the other past the invocation's
  deadline (it now requeues the rest as a `cancel_at` command of its own);
- a command handled after its time (a failed first attempt, a backlog) was dead-lettered as
  "in the past" and the batch never cancelled (a time that was in the future when the message
  was sent, by SQS `SentTimestamp`, is due: the batch is cancelled at once);
- the rest the function itself requeued after the time had passed, or sent just before it
  (the send stamped after the time), was dead-lettered the same way (a passed time is sent
  on as a plain cancel; a minute of slack covers a send stamped late);
- a time less than a second ahead was truncated to the second before it (times now round up
  to the next whole second).
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta

from batch_canceller.scheduling import SCHEDULE_WORKERS
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, failed_ids, sqs_event

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


def test_the_requeued_rest_of_a_cancel_at_command_is_not_dead_lettered(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    # More IDs than the scheduler's threads: the first round of slow creates outlasts the
    # time, and the rest is requeued after cancel_at (1 to 2 s ahead) has passed.
    ids = [emulator.seed(status="in_progress")["id"] for _ in range(SCHEDULE_WORKERS + 4)]
    settings = {"SCHEDULER_ROLE_ARN": ROLE, "SCHEDULE_GROUP_NAME": stack.table_name}
    app = stack.app(emulator.base_url, aws_endpoint=proxy.url, **settings)
    at = datetime.fromtimestamp(math.ceil(time.time()) + 1, UTC)
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
    statuses = [emulator.get(b)["status"] for b in ids]
    print("DLQ:", reasons, "| statuses:", statuses)
    assert dead == [], f"the scheduler's own requeue was dead-lettered: {reasons}"
    # AND the requeued rest was cancelled, being due
    assert any(status in ("cancelling", "cancelled") for status in statuses)


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


def test_requeued_rest_sent_at_its_time_is_not_dead_lettered(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    ids = [emulator.seed(status="in_progress")["id"] for _ in range(2)]
    settings = {"SCHEDULER_ROLE_ARN": ROLE, "SCHEDULE_GROUP_NAME": stack.table_name}
    app = stack.app(emulator.base_url, aws_endpoint=proxy.url, **settings)
    while time.time() % 1 > 0.2:
        time.sleep(0.02)
    at = datetime.fromtimestamp(math.ceil(time.time()) + 1, UTC)
    proxy.add_rule(
        Rule(operation="Scheduler.CreateSchedule", action="delay", delay_seconds=1.2, times=None)
    )
    proxy.add_rule(
        Rule(operation="SQS.SendMessageBatch", action="delay", delay_seconds=2.5, times=1)
    )
    answer = app.handle(
        sqs_event(json.dumps({"batch_ids": ids, "cancel_at": at.isoformat()})), context(7.5)
    )
    proxy.clear_rules()
    print("first handling:", answer, "| cancel_at", at.isoformat())
    queued = stack.queued_bodies()
    print("requeued:", queued)

    time.sleep(max(0.0, at.timestamp() - time.time()) + 0.5)
    source = stack.event_source(app)
    for _ in range(3):
        source.poll_once(wait_seconds=1)

    dead = stack.dead_letters()
    reasons = [m["MessageAttributes"]["error_reason"]["StringValue"] for m in dead]
    print("DLQ:", reasons, "| statuses:", [emulator.get(b)["status"] for b in ids])
    assert dead == [], f"the scheduler's own requeue was dead-lettered: {reasons}"

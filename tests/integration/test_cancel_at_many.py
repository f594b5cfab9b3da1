"""`cancel_at` with many IDs: concurrent Scheduler calls that stop before the invocation's
deadline, and a rest (not started, or failed for a while) that goes on as one command, so that
every batch ends with exactly one schedule."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from batch_canceller.scheduling import schedule_name
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, failed_ids, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"


def scheduled_batches(stack: Stack) -> Counter[str]:
    """Batch ID -> how many schedules of the test's group would cancel it."""
    scheduler = client("scheduler", stack.endpoint)
    found: Counter[str] = Counter()
    for page in scheduler.get_paginator("list_schedules").paginate(GroupName=stack.table_name):
        for summary in page["Schedules"]:
            detail = scheduler.get_schedule(Name=summary["Name"], GroupName=stack.table_name)
            found.update(json.loads(detail["Target"]["Input"])["batch_ids"])
    return found


def drain(stack: Stack, app: Any) -> list[dict[str, Any]]:
    """Hand every message on the queue to the function, as Lambda would; returns the bodies."""
    source = stack.event_source(app, function_timeout_seconds=120.0)
    sqs = client("sqs", stack.endpoint)
    handled: list[dict[str, Any]] = []
    for _ in range(20):
        depth = sqs.get_queue_attributes(
            QueueUrl=stack.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        if not any(int(value) for value in depth.values()):
            return handled
        handled.extend(stack.queued_bodies())
        source.poll_once(wait_seconds=1)
    raise AssertionError("the queue did not drain")


def scheduled(answer: dict[str, Any], ids: list[str]) -> set[str]:
    """Which of `ids` the summary names a schedule of."""
    return {batch_id for batch_id in ids if schedule_name(batch_id) in answer["schedules"]}


def in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


INVOCATION_SECONDS = 14.0


def scheduled_app(stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy) -> Any:
    client("scheduler", stack.endpoint).create_schedule_group(Name=stack.table_name)
    return stack.app(
        emulator.base_url,
        aws_endpoint=proxy.url,
        SCHEDULER_ROLE_ARN=ROLE,
        SCHEDULE_GROUP_NAME=stack.table_name,
    )


def test_a_thousand_ids_stop_before_the_deadline_and_each_batch_gets_one_schedule(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """GIVEN a Scheduler that answers in 100 ms, but not at all to its first two calls
    WHEN a cancel_at command with 1,000 IDs arrives with 14 s left
    THEN the invocation answers before its deadline, its message is done, and once the rest it
    requeued is handled every batch has exactly one schedule, and none was listed."""
    app = scheduled_app(stack, emulator, proxy)
    proxy.add_rule(
        Rule(operation="Scheduler.CreateSchedule", action="delay", delay_seconds=12.0, times=2)
    )
    proxy.add_rule(Rule(operation="Scheduler.*", action="delay", delay_seconds=0.1, times=None))
    ids = [f"batch_{i:04d}" for i in range(1000)]
    body = json.dumps({"batch_ids": ids, "cancel_at": in_hours(6), "reason": "r"})
    ctx = context(INVOCATION_SECONDS)

    answer = app.handle(sqs_event(body), ctx)

    # Lambda would have stopped it at the deadline: it must answer before then.
    left = ctx.get_remaining_time_in_millis()
    print("first invocation: ms left", left, "| calls", dict(proxy.calls))
    assert left > 0, "the invocation ran past its deadline"
    assert failed_ids(answer) == set()  # the rest goes on as a message of its own
    first = scheduled_batches(stack)
    assert 0 < len(first) < len(ids)

    proxy.clear_rules()
    requeued = drain(stack, app)
    print("requeued bodies:", [(len(b["batch_ids"]), b.get("reason")) for b in requeued])

    assert proxy.calls["Scheduler.ListSchedules"] == 0
    assert {b.get("reason") for b in requeued} == {"r"}
    assert all("cancel_at" in b for b in requeued)
    found = scheduled_batches(stack)
    assert sorted(found) == ids
    assert set(found.values()) == {1}
    assert stack.dead_letters() == []
    assert emulator.requests == []  # scheduled, not cancelled


def test_throttled_creates_go_on_with_the_rest_and_the_others_are_scheduled(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """GIVEN a Scheduler that throttles five creates
    WHEN a cancel_at command with 40 IDs is handled (a direct invoke: its answer is the summary)
    THEN the others are scheduled, the five are requeued as one cancel_at command (not the
    whole message failed), and once it is handled every batch has one schedule."""
    app = scheduled_app(stack, emulator, proxy)
    proxy.add_rule(Rule(operation="Scheduler.CreateSchedule", action="throttle", times=5))
    ids = [f"batch_t{i:02d}" for i in range(40)]
    when = in_hours(3)

    answer = app.handle({"batch_ids": ids, "cancel_at": when, "requested_by": "ops"}, context())

    print("answer:", {k: v for k, v in answer.items() if k != "schedules"})
    assert answer["status"] == "partially_scheduled"
    assert answer["requeued"] == 5
    assert len(answer["schedules"]) == 35

    requeued = drain(stack, app)  # it comes back after RETRY_DELAY_SECONDS

    assert [sorted(b["batch_ids"]) for b in requeued] == [sorted(set(ids) - scheduled(answer, ids))]
    assert requeued[0]["cancel_at"] == datetime.fromisoformat(when).isoformat()
    assert requeued[0]["requested_by"] == "ops"
    found = scheduled_batches(stack)
    assert sorted(found) == ids
    assert set(found.values()) == {1}
    assert stack.dead_letters() == []


def test_an_id_scheduler_rejects_does_not_block_the_others(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """A permanent answer (ValidationException) for some IDs: those are reported in the
    summary and the log, not retried; the others are scheduled; nothing is requeued."""
    app = scheduled_app(stack, emulator, proxy)
    proxy.add_rule(
        Rule(operation="Scheduler.CreateSchedule", action="http_error", status=400, times=3)
    )
    ids = [f"batch_v{i:02d}" for i in range(20)]

    answer = app.handle({"batch_ids": ids, "cancel_at": in_hours(3)}, context())

    print("answer:", {k: v for k, v in answer.items() if k != "schedules"})
    assert answer["status"] == "partially_scheduled"
    assert answer["requeued"] == 0
    assert len(answer["rejected"]) == 3
    assert all(r.startswith("ValidationException") for r in answer["rejected"].values())
    assert sorted(scheduled(answer, ids) | set(answer["rejected"])) == ids
    assert sorted(scheduled_batches(stack)) == sorted(scheduled(answer, ids))
    assert stack.queued_bodies() == []
    assert stack.dead_letters() == []


def test_a_command_scheduler_rejects_entirely_goes_to_the_dlq_with_the_reason(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    app = scheduled_app(stack, emulator, proxy)
    proxy.add_rule(
        Rule(operation="Scheduler.CreateSchedule", action="http_error", status=400, times=None)
    )
    body = json.dumps({"batch_id": "batch_v", "cancel_at": in_hours(3)})

    answer = app.handle(sqs_event(body), context())

    assert failed_ids(answer) == set()
    [letter] = stack.dead_letters()
    assert "ValidationException" in letter["MessageAttributes"]["error_reason"]["StringValue"]


def test_a_role_scheduler_refuses_fails_the_message_without_requeueing_it(
    stack: Stack, emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """403 (the role lacks a grant): no ID can be scheduled, so the message comes back from
    SQS (and, if it stays so, reaches the DLQ by the queue's redrive); nothing is requeued."""
    app = scheduled_app(stack, emulator, proxy)
    proxy.add_rule(
        Rule(operation="Scheduler.CreateSchedule", action="http_error", status=403, times=None)
    )
    event = sqs_event(json.dumps({"batch_ids": ["batch_x", "batch_y"], "cancel_at": in_hours(1)}))

    answer = app.handle(event, context())

    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    assert stack.queued_bodies() == []
    assert stack.dead_letters() == []

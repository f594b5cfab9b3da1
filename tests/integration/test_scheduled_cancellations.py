"""`cancel_at`: one EventBridge Scheduler schedule per batch, named from its ID, idempotent, and
updated in place by a later `cancel_at` for the same batch."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batch_canceller.app import Application
from batch_canceller.schedule_writer import Written, write_schedule
from batch_canceller.scheduling import schedule_name
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, failed_ids, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"


def scheduled_app(
    stack: Stack, emulator: OpenAIEmulator, aws_endpoint: str | None = None
) -> Application:
    return stack.app(
        emulator.base_url,
        aws_endpoint=aws_endpoint,
        SCHEDULER_ROLE_ARN=ROLE,
        SCHEDULE_GROUP_NAME=stack.table_name,
    )


@pytest.fixture
def scheduler(stack: Stack) -> Any:
    scheduler = client("scheduler", stack.endpoint)
    scheduler.create_schedule_group(Name=stack.table_name)  # a group per test keeps them apart
    return scheduler


def schedules(scheduler: Any, group: str) -> list[dict[str, Any]]:
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
    return [scheduler.get_schedule(Name=name, GroupName=group) for name in names]


def in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


def test_cancel_at_creates_a_one_time_schedule_that_sends_the_command_to_the_queue(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    app = scheduled_app(stack, emulator)
    when = in_hours(6)
    body = {"batch_id": "batch_later", "reason": "night", "requested_by": "ops", "cancel_at": when}

    answer = app.handle(sqs_event(json.dumps(body)), context())

    assert failed_ids(answer) == set()
    [schedule] = schedules(scheduler, stack.table_name)
    at = datetime.fromisoformat(when).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert schedule["ScheduleExpression"] == f"at({at})"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["RoleArn"] == ROLE
    assert schedule["Target"]["Arn"].endswith(":" + stack.queue_url.rsplit("/", 1)[1])
    assert json.loads(schedule["Target"]["Input"]) == {
        "batch_ids": ["batch_later"],
        "reason": "night",
        "requested_by": "ops",
        "schedule": schedule["Name"],  # its cancel removes the record's note of it
    }
    assert emulator.requests == []  # nothing cancelled yet


def test_same_command_twice_makes_one_schedule_and_a_later_time_replaces_it(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any, proxy: FaultProxy
) -> None:
    """GIVEN a batch scheduled at one time, twice (a redelivery)
    WHEN a later cancel_at for the same batch arrives
    THEN it has one schedule, at the later time, and the function never listed schedules
    (its role may not: ListSchedules cannot be scoped to a group)."""
    app = scheduled_app(stack, emulator, aws_endpoint=proxy.url)
    first = json.dumps({"batch_ids": ["batch_a", "batch_b"], "cancel_at": in_hours(2)})
    app.handle(sqs_event(first), context())
    app.handle(sqs_event(first), context())
    assert len(schedules(scheduler, stack.table_name)) == 2

    later = in_hours(5)
    body = json.dumps({"batch_id": "batch_a", "cancel_at": later, "reason": "moved"})
    assert failed_ids(app.handle(sqs_event(body), context())) == set()

    assert proxy.calls["Scheduler.ListSchedules"] == 0
    found = schedules(scheduler, stack.table_name)
    assert len(found) == 2
    by_batch = {json.loads(s["Target"]["Input"])["batch_ids"][0]: s for s in found}
    stamp = datetime.fromisoformat(later).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert by_batch["batch_a"]["ScheduleExpression"] == f"at({stamp})"
    assert by_batch["batch_a"]["Name"] == schedule_name("batch_a")
    assert json.loads(by_batch["batch_a"]["Target"]["Input"])["reason"] == "moved"
    assert by_batch["batch_a"]["ActionAfterCompletion"] == "DELETE"
    assert by_batch["batch_a"]["State"] == "ENABLED"
    assert by_batch["batch_b"]["ScheduleExpression"] != f"at({stamp})"
    assert proxy.calls["Scheduler.UpdateSchedule"] == 3  # the redelivery's two, and the move


def test_a_schedule_that_fired_and_deleted_itself_is_created_again(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    app = scheduled_app(stack, emulator)
    app.handle(sqs_event(json.dumps({"batch_id": "batch_a", "cancel_at": in_hours(1)})), context())
    # It fires; ActionAfterCompletion DELETE removes it.
    scheduler.delete_schedule(Name=schedule_name("batch_a"), GroupName=stack.table_name)

    again = in_hours(3)
    app.handle(sqs_event(json.dumps({"batch_id": "batch_a", "cancel_at": again})), context())

    [schedule] = schedules(scheduler, stack.table_name)
    stamp = datetime.fromisoformat(again).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert schedule["ScheduleExpression"] == f"at({stamp})"


def test_two_commands_for_one_batch_at_once_leave_one_schedule_at_one_of_their_times(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any, proxy: FaultProxy
) -> None:
    """Last writer wins: the schedule ends at the time of whichever write landed last."""
    proxy.add_rule(Rule(operation="Scheduler.*", action="delay", delay_seconds=0.2, times=None))
    app = scheduled_app(stack, emulator, aws_endpoint=proxy.url)
    times = [in_hours(2), in_hours(4)]
    bodies = [json.dumps({"batch_id": "batch_raced", "cancel_at": t}) for t in times]

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda b: app.handle(sqs_event(b), context()), bodies))

    assert [failed_ids(a) for a in answers] == [set(), set()]
    [schedule] = schedules(scheduler, stack.table_name)
    stamps = {f"at({datetime.fromisoformat(t).strftime('%Y-%m-%dT%H:%M:%S')})" for t in times}
    assert schedule["ScheduleExpression"] in stamps
    assert proxy.calls["Scheduler.CreateSchedule"] == 2  # one created, one found it taken


@pytest.mark.parametrize(
    ("cancel_at", "reason"),
    [
        ((datetime.now(UTC) - timedelta(minutes=5)).isoformat(), "in the past"),
        ("2030-01-01T06:00:00", "needs a UTC offset"),
        ("tomorrow at six", "not an ISO-8601 time"),
        ((datetime.now(UTC) + timedelta(days=400)).isoformat(), "days ahead"),
        (1767250800, "must be an ISO-8601 string"),
    ],
)
def test_bad_cancel_at_goes_to_the_dlq_with_its_reason(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any, cancel_at: Any, reason: str
) -> None:
    app = scheduled_app(stack, emulator)
    body = json.dumps({"batch_id": "batch_x", "cancel_at": cancel_at})

    answer = app.handle(sqs_event(body, "batch_good_neighbour"), context())

    assert failed_ids(answer) == set()
    letters = stack.dead_letters()
    assert len(letters) == 1
    assert reason in letters[0]["MessageAttributes"]["error_reason"]["StringValue"]
    assert schedules(scheduler, stack.table_name) == []
    assert any("batch_good_neighbour" in r.path for r in emulator.requests)


def test_cancel_at_without_a_scheduler_role_is_rejected_clearly(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    app = stack.app(emulator.base_url)

    answer = app.handle({"batch_id": "batch_x", "cancel_at": in_hours(1)}, context())

    assert answer["status"] == "rejected"
    assert "SCHEDULER_ROLE_ARN" in answer["error"]


def test_a_schedule_that_fires_between_the_conflict_and_the_update_is_created_again(
    stack: Stack, scheduler: Any
) -> None:
    """GIVEN a batch's schedule exists (the create finds its name taken)
    WHEN it fires and deletes itself before the update lands
    THEN the update's ResourceNotFoundException leads to a create at the new time."""
    name, group = schedule_name("batch_x"), stack.table_name

    def definition(hours: int) -> dict[str, Any]:
        at = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S")
        target = {"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "RoleArn": ROLE, "Input": "{}"}
        return {
            "Name": name,
            "GroupName": group,
            "ScheduleExpression": f"at({at})",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "ActionAfterCompletion": "DELETE",
            "Target": target,
        }

    scheduler.create_schedule(**definition(1))
    writer = client("scheduler", stack.endpoint)

    def fire(**_: Any) -> None:  # returns None: the update is still sent
        scheduler.delete_schedule(Name=name, GroupName=group)

    writer.meta.events.register("before-call.scheduler.UpdateSchedule", fire)
    later = definition(2)

    result = write_schedule(writer, "batch_x", later, lambda: True)

    assert result.written is Written.SCHEDULED
    [schedule] = schedules(scheduler, group)
    assert schedule["ScheduleExpression"] == later["ScheduleExpression"]

"""`cancel_at`: one EventBridge Scheduler schedule per batch, idempotent, replaced by a later time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batch_canceller.app import Application
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, failed_ids, sqs_event

ROLE = "arn:aws:iam::123456789012:role/batch-canceller-scheduler"


def scheduled_app(stack: Stack, emulator: OpenAIEmulator) -> Application:
    return stack.app(
        emulator.base_url, SCHEDULER_ROLE_ARN=ROLE, SCHEDULE_GROUP_NAME=stack.table_name
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
    }
    assert emulator.requests == []  # nothing cancelled yet


def test_same_command_twice_makes_one_schedule_and_a_later_time_replaces_it(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    app = scheduled_app(stack, emulator)
    first = json.dumps({"batch_ids": ["batch_a", "batch_b"], "cancel_at": in_hours(2)})
    app.handle(sqs_event(first), context())
    app.handle(sqs_event(first), context())
    assert len(schedules(scheduler, stack.table_name)) == 2

    later = in_hours(5)
    app.handle(sqs_event(json.dumps({"batch_id": "batch_a", "cancel_at": later})), context())

    found = schedules(scheduler, stack.table_name)
    assert len(found) == 2
    by_batch = {json.loads(s["Target"]["Input"])["batch_ids"][0]: s for s in found}
    stamp = datetime.fromisoformat(later).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert by_batch["batch_a"]["ScheduleExpression"] == f"at({stamp})"


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

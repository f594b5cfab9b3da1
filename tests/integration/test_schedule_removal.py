"""A batch that becomes terminal loses its waiting `cancel_at` schedule: the record notes the
schedule when it is written, and the write that ends the batch has it deleted (moto's
Scheduler, over its socket)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batch_canceller.records import SCHEDULE_NOTE
from batch_canceller.scheduling import schedule_name
from infra.openai_emulator import OpenAIEmulator
from tests.integration.test_scheduled_cancellations import in_hours, scheduled_app, schedules
from tests.support import Stack, client, context, failed_ids, sqs_event


@pytest.fixture
def scheduler(stack: Stack) -> Any:
    scheduler = client("scheduler", stack.endpoint)
    scheduler.create_schedule_group(Name=stack.table_name)
    return scheduler


def names(scheduler: Any, group: str) -> list[str]:
    return [schedule["Name"] for schedule in schedules(scheduler, group)]


def test_cancelling_a_scheduled_batch_now_deletes_its_schedule(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    """GIVEN batch_later scheduled for a cancel in 6 h, and batch_other in 6 h too
    WHEN batch_later is cancelled now
    THEN its schedule is gone and its record no longer notes one; batch_other's stays."""
    emulator.seed("batch_later", cancel_delay_seconds=0)
    app = scheduled_app(stack, emulator)
    command = {"batch_ids": ["batch_later", "batch_other"], "cancel_at": in_hours(6)}
    assert failed_ids(app.handle(sqs_event(json.dumps(command)), context())) == set()
    assert sorted(names(scheduler, stack.table_name)) == sorted(
        [schedule_name("batch_later"), schedule_name("batch_other")]
    )
    assert (stack.item("batch_later") or {})[SCHEDULE_NOTE] == schedule_name("batch_later")

    answer = app.handle(sqs_event("batch_later"), context())

    assert failed_ids(answer) == set()
    assert (stack.item("batch_later") or {})["status"] == "cancelled"
    assert names(scheduler, stack.table_name) == [schedule_name("batch_other")]
    assert SCHEDULE_NOTE not in (stack.item("batch_later") or {})
    assert (stack.item("batch_other") or {})[SCHEDULE_NOTE] == schedule_name("batch_other")


def test_a_batch_that_ends_on_a_status_check_loses_its_schedule(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    """The cancel leaves the batch `cancelling`; the check that finds it `cancelled` ends it."""
    emulator.seed("batch_slow", cancel_delay_seconds=2)
    app = scheduled_app(stack, emulator)
    at = {"batch_id": "batch_slow", "cancel_at": in_hours(6)}
    app.handle(sqs_event(json.dumps(at)), context())
    app.handle(sqs_event("batch_slow"), context())
    assert (stack.item("batch_slow") or {})["status"] == "cancelling"
    assert names(scheduler, stack.table_name) == [schedule_name("batch_slow")]

    stack.run_until(app, lambda: (stack.item("batch_slow") or {}).get("status") == "cancelled")

    assert names(scheduler, stack.table_name) == []
    assert SCHEDULE_NOTE not in (stack.item("batch_slow") or {})


def test_a_cancel_at_for_a_batch_already_terminal_leaves_no_schedule(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    """The terminal write came first: the note's condition fails and the schedule just
    written is deleted at once."""
    emulator.seed("batch_done", status="completed")
    app = scheduled_app(stack, emulator)
    app.handle(sqs_event("batch_done"), context())
    assert (stack.item("batch_done") or {})["status"] == "completed"

    answer = app.handle(
        sqs_event(json.dumps({"batch_id": "batch_done", "cancel_at": in_hours(2)})), context()
    )

    assert failed_ids(answer) == set()
    assert names(scheduler, stack.table_name) == []
    assert SCHEDULE_NOTE not in (stack.item("batch_done") or {})


def test_a_schedule_already_gone_is_no_failure_and_its_note_goes(
    stack: Stack, emulator: OpenAIEmulator, scheduler: Any
) -> None:
    """It fired (and deleted itself), or an operator deleted it: DeleteSchedule answers
    ResourceNotFound, which is what was wanted."""
    emulator.seed("batch_fired", cancel_delay_seconds=0)
    app = scheduled_app(stack, emulator)
    app.handle(
        sqs_event(json.dumps({"batch_id": "batch_fired", "cancel_at": in_hours(1)})), context()
    )
    scheduler.delete_schedule(Name=schedule_name("batch_fired"), GroupName=stack.table_name)

    answer = app.handle(sqs_event("batch_fired"), context())

    assert failed_ids(answer) == set()
    assert (stack.item("batch_fired") or {})["status"] == "cancelled"
    assert SCHEDULE_NOTE not in (stack.item("batch_fired") or {})

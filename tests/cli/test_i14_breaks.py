"""Adversarial review of issue 14: the `cancel_schedule` note as `status` reads it, and what
`status` prints of a record's texts. Real servers: moto (its Scheduler too) and the emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch_canceller.app import Application
from batch_canceller.records import SCHEDULE_NOTE
from batch_canceller.scheduling import schedule_name
from infra.openai_emulator import OpenAIEmulator
from tests.cli import SCHEDULER_ROLE, cli, write_state
from tests.support import Stack, client, context, failed_ids, sqs_event

WAITS = "a cancel_at schedule waits"


def in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


def scheduled_app(stack: Stack, emulator: OpenAIEmulator) -> Application:
    return stack.app(
        emulator.base_url, SCHEDULER_ROLE_ARN=SCHEDULER_ROLE, SCHEDULE_GROUP_NAME=stack.table_name
    )


def schedule_names(stack: Stack) -> list[str]:
    scheduler = client("scheduler", stack.endpoint)
    return [s["Name"] for s in scheduler.list_schedules(GroupName=stack.table_name)["Schedules"]]


def fire(stack: Stack, batch_id: str) -> str:
    """What Scheduler does at the schedule's time: sends its Input to the queue and deletes
    the schedule (`ActionAfterCompletion: DELETE`). Returns the Input, for the function."""
    scheduler = client("scheduler", stack.endpoint)
    name = schedule_name(batch_id)
    body = str(scheduler.get_schedule(Name=name, GroupName=stack.table_name)["Target"]["Input"])
    scheduler.delete_schedule(Name=name, GroupName=stack.table_name)
    return body


def test_status_says_no_schedule_waits_after_the_schedule_fired_for_a_batch_that_never_ends(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN a cancel_at for batch_nosuch (no such batch: the API answers 404)
    WHEN its schedule fires (and deletes itself) and the function handles the cancel
    THEN no schedule is left, and `status` must not say one waits. The record never becomes
    terminal, so the note is never removed: `status` says forever that a schedule waits."""
    state = write_state(stack, emulator, tmp_path)
    app = scheduled_app(stack, emulator)
    at = json.dumps({"batch_id": "batch_nosuch", "cancel_at": in_hours(1)})
    assert failed_ids(app.handle(sqs_event(at), context())) == set()
    assert schedule_names(stack) == [schedule_name("batch_nosuch")]

    assert failed_ids(app.handle(sqs_event(fire(stack, "batch_nosuch")), context())) == set()
    assert schedule_names(stack) == []  # nothing waits any more
    capsys.readouterr()

    assert cli(state, "status", "batch_nosuch") == 0
    out = capsys.readouterr().out
    assert "404" in out  # the cancel's answer is recorded
    assert WAITS not in out, out
    assert SCHEDULE_NOTE not in (stack.item("batch_nosuch") or {})


def test_status_says_no_schedule_waits_after_schedules_delete_removed_it(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN batch_later (running) with a cancel_at in 6 h
    WHEN the operator deletes it: `batch-canceller schedules delete --batch batch_later`
    THEN `batch-canceller status batch_later` must not say a schedule waits (it says so, naming
    the deleted schedule, until the batch ends some day)."""
    emulator.seed("batch_later")
    state = write_state(stack, emulator, tmp_path)
    app = scheduled_app(stack, emulator)
    at = json.dumps({"batch_id": "batch_later", "cancel_at": in_hours(6)})
    assert failed_ids(app.handle(sqs_event(at), context())) == set()
    assert cli(state, "schedules", "delete", "--batch", "batch_later") == 0
    assert schedule_names(stack) == []
    capsys.readouterr()

    cli(state, "status", "batch_later")

    out = capsys.readouterr().out
    assert WAITS not in out, out


def test_status_does_not_pass_terminal_control_sequences_from_a_record_to_the_terminal(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN a cancel whose requested_by (anyone who may send to the queue or the bus sets it;
    1,024 characters, control characters accepted) holds ANSI escapes: clear the line, move up
    WHEN the operator runs `batch-canceller status`
    THEN the table must not carry ESC to the terminal (it would rewrite what the operator sees:
    here it erases the row). Only \\n, \\r and \\t are folded today."""
    emulator.seed("batch_esc", cancel_delay_seconds=0)
    state = write_state(stack, emulator, tmp_path)
    app = scheduled_app(stack, emulator)
    sneaky = "ops\x1b[2K\x1b[1A\x1b[2K\x1b]0;owned\x07"
    body = json.dumps({"batch_id": "batch_esc", "requested_by": sneaky})
    assert failed_ids(app.handle(sqs_event(body), context())) == set()
    assert (stack.item("batch_esc") or {})["requested_by"] == sneaky  # accepted as it is
    capsys.readouterr()

    assert cli(state, "status", "batch_esc") == 0

    out = capsys.readouterr().out
    assert "\x1b" not in out, repr(out)
    assert "\x07" not in out, repr(out)

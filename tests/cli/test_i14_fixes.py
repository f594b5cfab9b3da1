"""Issue 14's review, fixed: `schedules delete NAME` removes the record's note as `--batch`
does, and a record holding only that note reads as "no cancel sent yet"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch_canceller.records import SCHEDULE_NOTE
from batch_canceller.scheduling import schedule_name
from infra.openai_emulator import OpenAIEmulator
from tests.cli import cli, write_state
from tests.cli.test_i14_breaks import WAITS, in_hours, scheduled_app
from tests.support import Stack, context, failed_ids, sqs_event


def test_a_note_only_record_says_no_cancel_was_sent_and_that_a_schedule_waits(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = write_state(stack, emulator, tmp_path)
    at = json.dumps({"batch_id": "batch_soon", "cancel_at": in_hours(2)})
    assert failed_ids(scheduled_app(stack, emulator).handle(sqs_event(at), context())) == set()
    capsys.readouterr()

    assert cli(state, "status", "batch_soon") == 0

    out = capsys.readouterr().out
    assert "no cancel sent yet" in out
    assert WAITS in out


def test_schedules_delete_by_name_removes_the_records_note(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed("batch_later")
    state = write_state(stack, emulator, tmp_path)
    at = json.dumps({"batch_id": "batch_later", "cancel_at": in_hours(6)})
    assert failed_ids(scheduled_app(stack, emulator).handle(sqs_event(at), context())) == set()
    assert (stack.item("batch_later") or {}).get(SCHEDULE_NOTE) == schedule_name("batch_later")

    assert cli(state, "schedules", "delete", schedule_name("batch_later")) == 0

    assert SCHEDULE_NOTE not in (stack.item("batch_later") or {})
    capsys.readouterr()
    cli(state, "status", "batch_later")
    assert WAITS not in capsys.readouterr().out

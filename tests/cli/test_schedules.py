"""`schedules`: what `send --at` left in the schedule group once the function ran; deleting."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch_canceller.scheduling import legacy_name_prefix, schedule_name
from infra.openai_emulator import OpenAIEmulator
from tests.cli import SCHEDULER_ROLE, cli, offline_state, write_state
from tests.support import Stack, client


def test_schedules_from_send_at_are_listed_and_deleted_by_batch(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = write_state(stack, emulator, tmp_path)
    ids = ["batch_s1", "batch_s2", "batch_s3"]
    assert cli(state, "send", *ids, "--at", "+2h", "--per-message", "2", "--reason", "night") == 0
    app = stack.app(
        emulator.base_url, SCHEDULER_ROLE_ARN=SCHEDULER_ROLE, SCHEDULE_GROUP_NAME=stack.table_name
    )
    stack.event_source(app).poll_once()  # the function turns both commands into schedules
    capsys.readouterr()

    assert cli(state, "schedules", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert cli(state, "schedules", "list") == 0
    table = capsys.readouterr().out

    assert sorted(s["batch_ids"][0] for s in listed) == ids
    expected = datetime.now(UTC) + timedelta(hours=2)
    for schedule in listed:
        assert schedule["name"] == schedule_name(schedule["batch_ids"][0])
        assert schedule["reason"] == "night"
        assert schedule["state"] == "ENABLED"
        assert abs(datetime.fromisoformat(schedule["when"]) - expected) < timedelta(seconds=60)
    assert table.splitlines()[0].split() == ["NAME", "WHEN", "BATCH_IDS", "REASON", "STATE"]
    for schedule in listed:
        row = re.escape(schedule["name"]) + r"\s+" + re.escape(schedule["when"])
        assert re.search(row + r"\s+" + schedule["batch_ids"][0] + r"\s+night\s+ENABLED", table)
    assert emulator.requests == []  # scheduled, not cancelled

    # A schedule an earlier version named per (batch, time) goes with the batch's own.
    legacy = legacy_name_prefix("batch_s2") + "20991231T060000"
    client("scheduler", stack.endpoint).create_schedule(
        Name=legacy,
        GroupName=stack.table_name,
        ScheduleExpression="at(2099-12-31T06:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "RoleArn": SCHEDULER_ROLE},
    )
    assert cli(state, "schedules", "delete", "--batch", "batch_s2") == 0
    assert capsys.readouterr().out.split() == [
        "deleted",
        schedule_name("batch_s2"),
        "deleted",
        legacy,
    ]
    assert cli(state, "schedules", "--json") == 0
    remaining = json.loads(capsys.readouterr().out)
    assert sorted(s["batch_ids"][0] for s in remaining) == ["batch_s1", "batch_s3"]

    assert cli(state, "schedules", "delete", remaining[0]["name"], "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["deleted"] == [remaining[0]["name"]]

    assert cli(state, "schedules", "delete", "--batch", "batch_s2") == 1
    assert "no cancellation schedule for batch batch_s2" in capsys.readouterr().err


def test_delete_needs_names_or_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = offline_state(tmp_path)

    assert cli(state, "schedules", "delete") == 2
    assert cli(state, "schedules", "delete", "--batch", "a/b") == 2
    err = capsys.readouterr().err
    assert "pass --batch ID" in err
    assert "invalid batch ID" in err

"""`sweep`: the policy built from options, run by the function (in-process for the local stack)."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from batch_canceller.sweep_policy import NON_TERMINAL_STATUSES
from infra.cli import UsageError
from infra.cli.sweep import SweepOptions, build_request, parse_minutes
from infra.openai_emulator import OpenAIEmulator
from tests.cli import cli, offline_state, write_state
from tests.support import Stack

HOUR = 3600


def test_dry_run_lists_what_it_would_cancel_and_cancels_nothing(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    old_x = [
        emulator.seed(created_at=int(now - 3 * HOUR - i), metadata={"project": "x"})["id"]
        for i in range(3)
    ]
    young_x = emulator.seed(created_at=int(now - 600), metadata={"project": "x"})["id"]
    old_y = emulator.seed(created_at=int(now - 5 * HOUR), metadata={"project": "y"})["id"]
    done_x = emulator.seed(
        status="completed", created_at=int(now - 5 * HOUR), metadata={"project": "x"}
    )["id"]
    state = write_state(stack, emulator, tmp_path)
    policy = ["--older-than", "1h", "--metadata", "project=x"]

    assert cli(state, "sweep", "--dry-run", *policy) == 0
    out = capsys.readouterr().out
    assert cli(state, "sweep", "--dry-run", *policy, "--json") == 0
    answer = json.loads(capsys.readouterr().out)

    lines = out.splitlines()
    assert lines[0].split() == [
        "LISTED",
        "MATCHED",
        "QUEUED",
        "SKIPPED_BY_MAX_CANCELS",
        "COMPLETE",
        "DRY_RUN",
    ]
    assert lines[1].split() == ["6", "3", "0", "0", "yes", "yes"]
    assert lines[3] == "WOULD_CANCEL"
    assert sorted(lines[4:]) == sorted(old_x)
    for other in (young_x, old_y, done_x):
        assert other not in out
    assert answer["dry_run"] is True
    assert sorted(answer["would_cancel"]) == sorted(old_x)
    assert answer["policy"] == {"older_than_minutes": 60, "metadata": {"project": "x"}}
    assert [r for r in emulator.requests if r.method == "POST"] == []
    assert stack.drain_queue() == []

    # For real: the matching batches are queued as ordinary cancel commands.
    assert cli(state, "sweep", *policy, "--max-cancels", "2", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["matched"], answer["queued"], answer["skipped_by_max_cancels"]) == (3, 2, 1)
    queued = [i for body in stack.drain_queue() for i in body["batch_ids"]]
    assert len(queued) == 2
    assert set(queued) <= set(old_x)


def test_older_than_accepts_hours_minutes_days_and_plain_minutes() -> None:
    assert parse_minutes("20h") == 1200
    assert parse_minutes("90m") == 90
    assert parse_minutes("2d") == 2880
    assert parse_minutes("45") == 45
    assert parse_minutes("1.5h") == 90
    assert parse_minutes("0.5m") == 0.5
    with pytest.raises(UsageError):
        parse_minutes("soon")


def test_build_request_maps_every_option() -> None:
    options = SweepOptions(
        older_than="20h",
        metadata=["project=evals", "team=ml=core"],
        endpoint="/v1/embeddings",
        model="m",
        statuses=["in_progress", "validating"],
        max_cancels=50,
        dry_run=True,
    )

    assert build_request(options) == {
        "sweep": {
            "older_than_minutes": 1200,
            "metadata": {"project": "evals", "team": "ml=core"},
            "endpoint": "/v1/embeddings",
            "model": "m",
            "statuses": ["in_progress", "validating"],
            "max_cancels": 50,
            "dry_run": True,
        }
    }


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--metadata", "project"], "expected KEY=VALUE"),
        (["--metadata", "a=1", "--metadata", "a=2"], "given twice"),
        (["--max-cancels", "0", "--older-than", "1h"], "--max-cancels must be"),
        ([], "--all"),
        # Filters that leave out no running batch: the function's rule, SweepRequest.selects.
        (["--older-than", "0"], "--all"),
        (["--older-than", "0m"], "--all"),
        (["--older-than", "0.5m"], "--all"),
        ([arg for s in sorted(NON_TERMINAL_STATUSES) for arg in ("--status", s)], "--all"),
        (["--status", "completed"], "invalid choice"),
        (["--older-than", "yesterday"], "--older-than"),
    ],
)
def test_bad_sweep_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    state = offline_state(tmp_path)

    assert cli(state, "sweep", *option) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        SweepOptions(older_than="0"),
        SweepOptions(older_than="0m"),
        SweepOptions(statuses=sorted(NON_TERMINAL_STATUSES)),
    ],
    ids=["--older-than 0", "--older-than 0m", "--status x4"],
)
def test_a_filter_that_leaves_out_no_batch_needs_all(options: SweepOptions) -> None:
    with pytest.raises(UsageError, match="--all"):
        build_request(options)

    assert build_request(replace(options, all=True))["sweep"]["all"] is True


def test_older_than_a_minute_or_three_statuses_select_without_all() -> None:
    assert build_request(SweepOptions(older_than="1m")) == {"sweep": {"older_than_minutes": 1}}
    three = ["finalizing", "in_progress", "validating"]
    assert build_request(SweepOptions(statuses=three)) == {"sweep": {"statuses": three}}


class Terminal(io.StringIO):
    """stdin as a person at a terminal, who types `typed`."""

    def isatty(self) -> bool:
        return True


def running_fleet(emulator: OpenAIEmulator) -> list[str]:
    now = time.time()
    running = [emulator.seed(created_at=int(now - 60 * i))["id"] for i in range(3)]
    emulator.seed(status="completed", created_at=int(now - 100))
    return running


def test_sweep_without_a_filter_refuses_and_names_all(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running_fleet(emulator)
    state = write_state(stack, emulator, tmp_path)

    assert cli(state, "sweep") == 2

    assert "--all" in capsys.readouterr().err
    assert emulator.requests == []
    assert stack.drain_queue() == []


def test_sweep_all_off_a_terminal_needs_yes(
    stack: Stack,
    emulator: OpenAIEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = running_fleet(emulator)
    state = write_state(stack, emulator, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    assert cli(state, "sweep", "--all") == 2
    assert "--yes" in capsys.readouterr().err
    assert stack.drain_queue() == []

    assert cli(state, "sweep", "--all", "--yes", "--json") == 0
    assert json.loads(capsys.readouterr().out)["queued"] == 3
    assert sorted(i for body in stack.drain_queue() for i in body["batch_ids"]) == sorted(running)


@pytest.mark.parametrize(("typed", "code", "queued"), [("yes\n", 0, 3), ("no\n", 1, 0), ("", 1, 0)])
def test_sweep_all_on_a_terminal_asks_with_the_dry_run_count(
    stack: Stack,
    emulator: OpenAIEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    typed: str,
    code: int,
    queued: int,
) -> None:
    running_fleet(emulator)
    state = write_state(stack, emulator, tmp_path)
    monkeypatch.setattr("sys.stdin", Terminal(typed))

    assert cli(state, "sweep", "--all") == code

    assert "Cancel 3 batches? type yes" in capsys.readouterr().err
    assert len([i for body in stack.drain_queue() for i in body["batch_ids"]]) == queued
    assert [r for r in emulator.requests if r.method == "POST"] == []  # only queued


def test_a_dry_run_needs_no_filter(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = running_fleet(emulator)
    state = write_state(stack, emulator, tmp_path)

    assert cli(state, "sweep", "--dry-run", "--json") == 0

    assert sorted(json.loads(capsys.readouterr().out)["would_cancel"]) == sorted(running)


def test_an_out_of_range_flag_is_named_as_the_flag_not_the_payload_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = offline_state(tmp_path)

    assert cli(state, "sweep", "--older-than", "20h", "--max-cancels", "0") == 2
    err = capsys.readouterr().err
    assert "--max-cancels must be" in err
    assert "sweep.max_cancels" not in err

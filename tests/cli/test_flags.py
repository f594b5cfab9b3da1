"""Every subcommand's errors name the flag the user typed, not the payload field the
function's parser names (`infra.cli.flags`, the one map)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cli.flags import in_flags
from tests.cli import cli, offline_state


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["sweep", "--metadata", "k" * 65 + "=v"], "--metadata: a key is at most 64"),
        (["sweep", "--endpoint", ""], "--endpoint must not be empty"),
        (["sweep", "--model", "m", "--requested-by", "x" * 1025], "--requested-by is longer"),
        (["status", "../etc"], "ID: invalid batch ID"),
        (["schedules", "delete", "--batch", "a/b"], "--batch: invalid batch ID"),
        (["send", "batch_a", "--requested-by", "x" * 1025], "--requested-by is longer"),
    ],
    ids=["sweep-metadata", "sweep-endpoint", "sweep-requested-by", "status", "schedules", "send"],
)
def test_usage_errors_name_flags_not_payload_fields(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    says: str,
) -> None:
    state = offline_state(tmp_path)  # nothing is called: the checks come first

    assert cli(state, *arguments) == 2

    err = capsys.readouterr().err
    assert says in err
    for field in ("'sweep.", "'batch_id'", "'requested_by'"):
        assert field not in err


@pytest.mark.parametrize(
    ("command", "message", "expected"),
    [
        ("send", "'cancel_at' needs a UTC offset", "--at needs a UTC offset"),
        ("send", "'batch_ids[3]': invalid batch ID", "ID: invalid batch ID"),
        ("sweep", "'sweep.statuses[0]' may only name", "--status may only name"),
        ("sweep", "'sweep.max_cancels' must be at least 1", "--max-cancels must be at least 1"),
        ("sweep", "'sweep.older_than_minutes' must be", "--older-than must be"),
        # A path the command does not fill is left as it is.
        ("status", "'check.attempt' must be", "'check.attempt' must be"),
    ],
)
def test_the_map_turns_each_field_into_its_flag(command: str, message: str, expected: str) -> None:
    assert in_flags(command, message) == expected

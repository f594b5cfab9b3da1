"""Adversarial review of issue 14: README commands the README-commands test does not run (or
runs with help a new user does not have), run as a new user would after `make local`'s export
block, with the real AWS CLI v1 from the venv."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_stack.running import BIN, ROOT, environment, running
from tests.local_stack.test_readme_commands import export_block, readme_blocks


def new_user_path(tmp: Path) -> str:
    """A PATH with the user's own AWS CLI (here: the venv's, linked alone) and the system's,
    but not the project's `.venv/bin`: `make venv` installs there and the README never says
    to activate it or put it on PATH."""
    own = tmp / "user-bin"
    own.mkdir()
    (own / "aws").symlink_to(Path(BIN) / "aws")
    system = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != BIN]
    return os.pathsep.join([str(own), *system])


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """`make local` once for this module: its export block and a new user's environment."""
    tmp = tmp_path_factory.mktemp("i14")
    env = environment()
    stack_env = {**env, "LOCAL_STACK_DIR": str(tmp / "state")}
    with running(["make", "--no-print-directory", "local"], ROOT, stack_env) as (_, printed):
        user_env = {**env, "PATH": new_user_path(tmp)}
        user_env.pop("PYTHONPATH", None)  # a user's shell has none
        yield export_block(printed), user_env


def bash(
    exports: str, script: str, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'eval "$EXPORTS"\n{script}'],
        cwd=cwd, env={**env, "EXPORTS": exports}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def operate_redrive_command() -> str:
    """The Operate section's Redrive command, as the README prints it (in backticks)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [command] = re.findall(r"`(aws [^`]*start-message-move-task[^`]*)`", readme)
    return str(command)


def test_the_readme_local_stack_block_runs_without_the_venv_on_path(
    local: tuple[str, dict[str, str]],
) -> None:
    """The README's blocks call `batch-canceller` bare; the export block sets no PATH and the
    README never says to activate `.venv`. README-commands test puts `.venv/bin` on PATH
    itself (running.environment). Run from the checkout, as the banner's own commands are."""
    exports, env = local
    first_line = readme_blocks()[0].splitlines()[1]  # the sweep's dry run: needs no record
    assert first_line.startswith("batch-canceller --local sweep"), first_line

    result = bash(exports, first_line, env)

    assert result.returncode == 0, (first_line, result.stdout, result.stderr)


def test_the_readme_local_stack_block_runs_first_as_printed(
    local: tuple[str, dict[str, str]],
) -> None:
    """The first block the README offers after `make local` (The local stack) starts with
    `status batch_abc123 batch_def456`: before anything was sent those have no record, so it
    exits 1 and the block stops there. The README-commands test runs it last, after the
    Sending-work block made the records. (`.venv/bin` on PATH here, to isolate this case.)"""
    exports, env = local
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"}
    block = readme_blocks()[0]

    result = bash(exports, block, env)

    assert result.returncode == 0, (block, result.stdout, result.stderr)


def test_the_readme_redrive_command_runs_after_the_export_block(
    local: tuple[str, dict[str, str]],
) -> None:
    """Operate, Redrive: `aws sqs start-message-move-task --source-arn "$DLQ_ARN" ...`. The
    export block sets no DLQ_ARN (nor is it a stack output), the command has no
    `$ENDPOINT_ARG` (AWS CLI v1 sends SQS calls to AWS), and moto has no StartMessageMoveTask:
    the README says every command of it runs as written after the export block."""
    exports, env = local
    command = operate_redrive_command()

    result = bash(exports, command, env)

    assert result.returncode == 0, (command, result.stdout, result.stderr)

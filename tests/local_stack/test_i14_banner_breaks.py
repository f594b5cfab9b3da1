"""Adversarial review of issue 14: the banner's own lines, pasted as printed, in a new shell
(which starts in the home directory), with a state directory whose name has a space."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_stack.running import ROOT, environment, running
from tests.local_stack.test_readme_commands import banner_commands, export_block


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    state_dir = tmp_path_factory.mktemp("i14banner") / "my stack"
    env = environment(LOCAL_STACK_DIR=str(state_dir))
    with running(["make", "--no-print-directory", "local"], ROOT, env) as (_, text):
        yield text, env


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_banners_source_line_runs_as_printed(
    printed: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """`(or: source DIR/env.sh)`: DIR is printed unquoted (the export block quotes it)."""
    text, env = printed
    [source] = re.findall(r"\(or: (source .*/env\.sh)\)", text)

    result = bash(f'{source}\ntest -n "$QUEUE_URL"', env, tmp_path)

    assert result.returncode == 0, (source, result.stderr)


def test_the_banners_commands_run_in_another_shell_outside_the_checkout(
    printed: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """ "in another shell, after the exports above ... try:" `.venv/bin/batch-canceller ...` is
    relative to the checkout; a new shell starts elsewhere (its home: here a temporary one)."""
    text, env = printed
    [command] = [c for c in banner_commands(text) if "sweep" in c]

    result = bash(f'eval "$EXPORTS"\n{command}', {**env, "EXPORTS": export_block(text)}, tmp_path)

    assert result.returncode == 0, (command, result.stderr)

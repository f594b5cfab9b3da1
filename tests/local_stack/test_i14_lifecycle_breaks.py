"""Adversarial review of issue 14: the local stack's life beyond Ctrl-C and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.local_stack.running import ROOT, environment, running
from tests.local_stack.test_readme_commands import export_block

LOCAL_STACK = [sys.executable, "-m", "infra.local_stack"]


def bash(exports: str, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'eval "$EXPORTS"\n{script}'],
        cwd=ROOT, env={**env, "EXPORTS": exports}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_a_second_local_stack_as_the_readme_runs_it_leaves_the_first_one_reachable(
    tmp_path: Path,
) -> None:
    """README, Ports: "`LOCAL_AWS_PORT=4600 LOCAL_OPENAI_PORT=8090 make local` runs a second
    one". Both use the same `.local-stack/` (nothing says to move LOCAL_STACK_DIR): the second
    overwrites the first's state.json and env.sh, and when it stops it removes them, so the
    first one's shell (its exports name that directory) gets `no local stack state` while the
    first stack still runs."""
    env = environment(LOCAL_STACK_DIR=str(tmp_path / ".local-stack"))
    with running(["make", "--no-print-directory", "local"], ROOT, env) as (first, printed):
        exports = export_block(printed)
        with running(["make", "--no-print-directory", "local"], ROOT, env):
            pass  # the second one started, and stopped (SIGTERM) as a person would
        assert first.poll() is None  # the first still runs

        result = bash(exports, "batch-canceller --local sweep --older-than 20h --dry-run", env)

        assert result.returncode == 0, (result.stdout, result.stderr)


def test_closing_the_terminal_stops_it_and_removes_the_state_file(tmp_path: Path) -> None:
    """A terminal closed under it sends SIGHUP: the default action ends the process with
    nothing said and state.json (pointing at a dead stack) and env.sh left behind, which is
    what issue 14 set out to end for SIGTERM."""
    state = tmp_path / ".local-stack" / "state.json"
    process = subprocess.Popen(
        LOCAL_STACK, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("in another shell"):
                break
        assert state.is_file()
        os.killpg(process.pid, signal.SIGHUP)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert "local stack stopped" in out
    assert not state.exists()

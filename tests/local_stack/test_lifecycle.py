"""The local stack's life: a signal stops it with a word and takes its state file along; a
busy port fails at once, naming the variable that moves it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local_stack.running import environment, running

LOCAL_STACK = [sys.executable, "-m", "infra.local_stack"]


def ignore_sigint() -> None:
    # As a non-interactive shell starts a background job (`make local &`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_it_saying_so_and_removes_the_state_file(
    signum: signal.Signals, tmp_path: Path
) -> None:
    state = tmp_path / ".local-stack" / "state.json"
    process = subprocess.Popen(
        LOCAL_STACK, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint,  # noqa: PLW1509
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("in another shell"):
                break
        assert state.is_file()
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "local stack stopped" in out
    assert not state.exists()
    assert not (tmp_path / ".local-stack" / "env.sh").exists()


@pytest.mark.parametrize("variable", ["LOCAL_AWS_PORT", "LOCAL_OPENAI_PORT"])
def test_a_busy_port_fails_at_once_naming_the_variable_that_moves_it(
    variable: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            LOCAL_STACK, cwd=tmp_path, env=environment(**{variable: port}), capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"port {port} is in use" in result.stderr
    assert f"{variable}=" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".local-stack" / "state.json").exists()


def test_a_second_stack_beside_a_running_one_names_the_port_variable(tmp_path: Path) -> None:
    """The case a user hits: `make local` twice. The second fails instead of hanging."""
    second = tmp_path / "second"
    second.mkdir()
    with running(LOCAL_STACK, tmp_path, environment()) as (_, printed):
        aws_port = printed.split("AWS_ENDPOINT_URL=http://127.0.0.1:", 1)[1].split()[0]
        result = subprocess.run(
            LOCAL_STACK, cwd=second, env=environment(LOCAL_AWS_PORT=aws_port),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert "LOCAL_AWS_PORT" in result.stderr

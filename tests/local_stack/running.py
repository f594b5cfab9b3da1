"""`make local` (or `python -m infra.local_stack`) as a child process, read as a person would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = "in another shell"
BIN = str(Path(sys.executable).parent)  # aws, batch-canceller, pytest's python


def environment(**extra: str) -> dict[str, str]:
    """A shell with no AWS configuration of its own, as on a fresh machine."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LOCAL_STACK_DIR"
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'functions'}",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "LOCAL_AWS_PORT": "0",
            "LOCAL_OPENAI_PORT": "0",
            "LOCAL_WEBHOOK_PORT": "0",
            **extra,
        }
    )
    return env


def new_user_environment(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """`env` as a new user's shell has it: their own AWS CLI (here the venv's `aws`, linked
    alone into `bin_dir`) and the system's PATH, but not the project's `.venv/bin` (only the
    export block puts it there) and no PYTHONPATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "aws").symlink_to(Path(BIN) / "aws")
    system = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != BIN]
    user = {**env, "PATH": os.pathsep.join([str(bin_dir), *system])}
    user.pop("PYTHONPATH", None)
    return user


@contextmanager
def running(
    command: Sequence[str], cwd: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Starts it in its own process group, yields it with what it printed up to the banner's
    end, and stops the whole group (make and its child) afterwards."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if line.startswith(READY):
                break
        else:
            raise AssertionError("it ended before it was ready: " + "".join(printed))
        for line in process.stdout:  # the commands to try, up to the blank line
            printed.append(line)
            if not line.strip():
                break
        # Drained from here on: the function logs to stdout, and a full pipe would block it
        # (and the stack's stop) as no terminal would.
        drains = [
            threading.Thread(target=stream.read, daemon=True)
            for stream in (process.stdout, process.stderr)
            if stream is not None
        ]
        for drain in drains:
            drain.start()
        yield process, "".join(printed)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        # A clean stop is test_lifecycle.py's subject; here a stop slower than 150 s (seen on a
        # loaded CI machine) is killed instead of failing a test about something else.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=150)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

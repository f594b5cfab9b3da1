"""Child processes of a chaos run: each in its own process group, none outliving the runner.

`Child` starts `python -m tests.reliability.processes MODULE ARGS...`: this module's `main`
installs a guard that kills the child's whole process group as soon as its parent is gone
(even if the runner itself is SIGKILLed and its `finally` never runs), then runs MODULE as
`__main__`. Stopping a child signals its process group, so nothing it started survives.
"""

from __future__ import annotations

import contextlib
import os
import queue
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Self

from infra.servers import ManagedServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PARENT_CHECK_SECONDS = 0.5


def python_path() -> str:
    """The import path a child needs: the repository root and the function package."""
    extra = [str(REPO_ROOT), str(REPO_ROOT / "functions")]
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*extra, inherited] if inherited else extra)


class Child(ManagedServer):
    """One child process; `ready_prefix` waits for the first stdout line to start with it."""

    def __init__(
        self,
        name: str,
        module: str,
        args: list[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_prefix: str | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self._argv = [sys.executable, "-m", "tests.reliability.processes", module, *args]
        self._log_path = log_path
        self._env = {**(env if env is not None else os.environ), "PYTHONPATH": python_path()}
        self._ready_prefix = ready_prefix
        self._ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.ready_line = ""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited (negative: the signal that ended it)."""
        return None if self._process is None else self._process.poll()

    def start(self) -> Self:
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            self._argv,
            cwd=REPO_ROOT,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self._ready_prefix else self._log,
            stderr=self._log,
            start_new_session=True,  # its own process group, so a signal reaches all of it
        )
        if self._ready_prefix is not None:
            self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout, log = self._process.stdout, self._log
        assert log is not None

        def pump() -> None:
            # The first line answers start(); the rest is copied to the log so the pipe never fills.
            for raw in stdout:
                if lines.empty():
                    lines.put(raw.decode("utf-8", "replace").strip())
                with contextlib.suppress(ValueError):  # the log was closed by stop()
                    log.write(raw)
                    log.flush()

        self._pump = threading.Thread(target=pump, name=f"{self.name}-stdout", daemon=True)
        self._pump.start()
        try:
            line = lines.get(timeout=self._ready_timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; see {self._log_path}") from None
        if not line.startswith(self._ready_prefix or ""):
            self.stop()
            raise RuntimeError(f"{self.name} said {line!r}; see {self._log_path}")
        self.ready_line = line

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would, and reap the child."""
        self._signal(signal.SIGKILL)
        if self._process is not None:
            self._process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; idempotent."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                self._signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=timeout)
            # Also reaches anything the child started, even if the child itself has exited.
            self._signal(signal.SIGKILL)
            process.wait()
        finally:
            if self._pump is not None:
                self._pump.join(timeout=2)
            if process.stdout is not None:
                process.stdout.close()
            if self._log is not None:
                self._log.close()
            self._process = None

    def _signal(self, signum: int) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)


def _guard_parent(parent: int) -> None:
    """Poll for the parent's death: the runner may be SIGKILLed and never clean up."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m tests.reliability.processes MODULE [ARGS...]")
    threading.Thread(
        target=_guard_parent, args=(os.getppid(),), name="parent-guard", daemon=True
    ).start()
    module, sys.argv = argv[0], argv
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

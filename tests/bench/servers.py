"""The servers the benchmark talks to, each in a process of its own so that its CPU time is
never counted as the bench's: the OpenAI emulator, moto, and a call-counting FaultProxy.

`python -m tests.bench.servers moto` and `python -m tests.bench.servers proxy --upstream URL`
are the child ends of MotoServer and ProxyServer; both run until their stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any, Self

from infra.servers import ManagedServer, moto_server, stop_process

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".bench"
# Not one of the test suite's keys (those are scanned for in test output); never printed.
BENCH_API_KEY = "sk-bench-" + "b3nch" * 6
STARTUP_TIMEOUT_SECONDS = 60.0


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: the project importable, no real AWS reachable."""
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    env.update(extra)
    return env


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of another process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class ServerProcess(ManagedServer):
    """A child that prints `<banner> http://...` on stdout once it listens."""

    def __init__(self, name: str, argv: list[str], banner: str) -> None:
        self.name = name
        self._argv = argv
        self._banner = banner
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self.url = ""

    def start(self) -> Self:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the child without waiting for it (see `wait_ready`)."""
        BENCH_DIR.mkdir(exist_ok=True)
        self._stderr = (BENCH_DIR / f"{self.name}.log").open("w")
        self._process = subprocess.Popen(
            self._argv,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def wait_ready(self) -> Self:
        line = self._read_line(STARTUP_TIMEOUT_SECONDS)
        if self._banner not in line:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start (said {line!r}); see {BENCH_DIR / self.name}.log"
            )
        self.url = line.split(self._banner, 1)[1].strip()
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the bench's own children exit on EOF
            stop_process(process, grace_seconds=10.0)
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _read_line(self, timeout: float) -> str:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        stdout = process.stdout
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines:
            raise RuntimeError(f"{self.name}: no answer within {timeout:.0f} s")
        return lines[0]

    def _command(self, command: str) -> str:
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError(f"{self.name} is not running")
        process.stdin.write(command + "\n")
        process.stdin.flush()
        return self._read_line(30.0)


class EmulatorServer(ServerProcess):
    """`python -m infra.openai_emulator`, driven through its `/_emulator` control plane."""

    def __init__(self, api_key: str = BENCH_API_KEY) -> None:
        super().__init__(
            "openai-emulator",
            [
                sys.executable,
                "-m",
                "infra.openai_emulator",
                "--port",
                "0",
                "--api-key",
                api_key,
                "--cancel-delay",
                "0",
                "--latency",
                "0",
            ],
            "OpenAI emulator listening on",
        )

    @property
    def base_url(self) -> str:
        """The API base, version path included (what OPENAI_BASE_URL is set to)."""
        return self.url

    @property
    def root_url(self) -> str:
        return self.url.rsplit("/v1", 1)[0]

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.root_url + "/_emulator" + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def configure(self, *, latency_seconds: float, cancel_delay_seconds: float) -> None:
        self.control(
            "POST",
            "/config",
            {"latency_seconds": latency_seconds, "cancel_delay_seconds": cancel_delay_seconds},
        )

    def seed(self, count: int) -> list[str]:
        """`count` new `in_progress` batches; their IDs."""
        ids: list[str] = []
        while len(ids) < count:
            chunk = min(1000, count - len(ids))
            ids.extend(b["id"] for b in self.control("POST", "/seed", {"count": chunk}))
        return ids

    def request_log(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "/requests"))

    def clear_request_log(self) -> None:
        self.control("DELETE", "/requests")


class MotoServer(ServerProcess):
    def __init__(self) -> None:
        super().__init__(
            "moto", [sys.executable, "-m", "tests.bench.servers", "moto"], "moto listening on"
        )


class ProxyServer(ServerProcess):
    """A FaultProxy (no faults) in front of moto; counts AWS calls by operation."""

    def __init__(self, upstream: str) -> None:
        super().__init__(
            "fault-proxy",
            [sys.executable, "-m", "tests.bench.servers", "proxy", "--upstream", upstream],
            "fault proxy listening on",
        )

    def calls(self) -> Counter[str]:
        return Counter(json.loads(self._command("calls")))

    def reset_counts(self) -> None:
        self._command("reset")


class Servers(ManagedServer):
    """The emulator and moto for a whole bench run."""

    def __init__(self) -> None:
        self.emulator = EmulatorServer()
        self.moto = MotoServer()

    def start(self) -> Self:
        try:
            self.emulator.launch()  # both start at once; each prints its URL when it listens
            self.moto.launch()
            self.emulator.wait_ready()
            self.moto.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.emulator.stop()
        self.moto.stop()


# -- child ends ------------------------------------------------------------------------------


def _serve_moto() -> int:
    with moto_server() as url:
        print(f"moto listening on {url}", flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or goes away)
    return 0


def _serve_proxy(upstream: str) -> int:
    from infra.fault_proxy import FaultProxy

    with FaultProxy(upstream) as proxy:
        print(f"fault proxy listening on {proxy.url}", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "calls":
                print(json.dumps(dict(proxy.calls)), flush=True)
            elif command == "reset":
                proxy.reset_counts()
                print("ok", flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.servers")
    parser.add_argument("server", choices=("moto", "proxy"))
    parser.add_argument("--upstream", default="")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.server == "moto":
        return _serve_moto()
    return _serve_proxy(args.upstream)


if __name__ == "__main__":
    sys.exit(main())

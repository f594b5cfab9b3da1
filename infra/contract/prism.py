"""Stoplight Prism, installed from npm into `.tools/prism` and run as a mock of an OpenAPI spec.

    python -m infra.contract.prism install          # idempotent; prints the executable
    python -m infra.contract.prism mock [SPEC]      # serve the derived subset until Ctrl-C

`prism mock SPEC --errors` answers every operation from the spec, checks each request against
it, and (the point of `--errors`) also checks its own answer:
- a request that breaks the spec (a wrong type, an out-of-range `limit`, a missing body field)
  gets 422 `application/problem+json` whose `validation` list names each violation, because
  the derived spec declares neither 422 nor 400 for these operations (this part happens
  with or without `--errors`);
- missing or wrong-scheme credentials get the operation's 401, with `sl-violations` set;
- an answer that would break the spec (a bad example) becomes 500 problem+json `#VIOLATIONS`
  instead of being served, so every body a test receives conforms to the spec.
`Prefer: code=409, example=already_completed` picks an answer and an example by name.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

from infra.contract.derive_spec import DERIVED_SPEC, REPO_ROOT
from infra.servers import ManagedServer, ServerStartError, stop_process, wait_until_answering

PRISM_PACKAGE = "@stoplight/prism-cli"
PRISM_VERSION = "5.16.0"
# Project-local and gitignored: no global npm install, no npx download on every run.
TOOLS_DIR = REPO_ROOT / ".tools" / "prism"
INSTALL_TIMEOUT_SECONDS = 300.0
START_TIMEOUT_SECONDS = 30.0


class PrismError(Exception):
    """Prism could not be installed, started or reached."""


def executable(tools_dir: Path = TOOLS_DIR) -> Path:
    return tools_dir / "node_modules" / ".bin" / "prism"


def installed_version(tools_dir: Path = TOOLS_DIR) -> str | None:
    manifest = tools_dir / "node_modules" / "@stoplight" / "prism-cli" / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def install_command(tools_dir: Path = TOOLS_DIR, version: str = PRISM_VERSION) -> list[str]:
    return [
        "npm",
        "install",
        "--prefix",
        str(tools_dir),
        "--save-exact",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        f"{PRISM_PACKAGE}@{version}",
    ]


def ensure_installed(tools_dir: Path = TOOLS_DIR, version: str = PRISM_VERSION) -> Path:
    """The Prism executable, installing the pinned version first if it is missing or differs."""
    if installed_version(tools_dir) == version and executable(tools_dir).exists():
        return executable(tools_dir)
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise PrismError(f"`{tool}` is not on PATH: Prism needs Node.js 18+ and npm")
    tools_dir.mkdir(parents=True, exist_ok=True)
    # Two test runs starting at once must not run npm into the same folder concurrently.
    with (tools_dir / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(tools_dir) != version or not executable(tools_dir).exists():
            try:
                result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    install_command(tools_dir, version),
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_SECONDS,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise PrismError(
                    f"npm install {PRISM_PACKAGE}@{version} took over "
                    f"{INSTALL_TIMEOUT_SECONDS:.0f}s (is the npm registry reachable?)"
                ) from None
            if result.returncode != 0:
                raise PrismError(
                    f"npm install {PRISM_PACKAGE}@{version} failed ({result.returncode}):\n"
                    f"{result.stderr.strip()[-2000:]}"
                )
    if installed_version(tools_dir) != version:
        raise PrismError(f"{PRISM_PACKAGE}@{version} is not in {tools_dir} after npm install")
    return executable(tools_dir)


def free_port(host: str = "127.0.0.1") -> int:
    # Prism takes a port number, not 0; the gap between close and Prism's bind is tiny.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PrismServer(ManagedServer):
    """`prism mock <spec> --errors` on a free local port; its debug log (which shows each
    request's headers and every violation) is kept in `log_path`."""

    def __init__(
        self,
        spec: Path = DERIVED_SPEC,
        *,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        tools_dir: Path = TOOLS_DIR,
    ) -> None:
        self.spec = spec
        self.host = host
        self.log_path = log_path
        self._port = port
        self._tools_dir = tools_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise PrismError("Prism not started")
        return f"http://{self.host}:{self._port}"

    def command(self, prism: Path) -> list[str]:
        return [
            str(prism),
            "mock",
            str(self.spec),
            "--host",
            self.host,
            "--port",
            str(self._port),
            "--errors",
            # debug logs each request's headers: how tests see what the client sent.
            "--verboseLevel",
            "debug",
        ]

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> Self:
        if self._process is not None:
            raise PrismError("Prism already started")
        prism = ensure_installed(self._tools_dir)
        if self._port is None:
            self._port = free_port(self.host)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self.command(prism),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Same process group as the caller (no new session): a Ctrl-C or a CI runner
            # killing the group ends Prism too. Without -m it is a single node process.
            env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
        )
        try:
            # Any HTTP answer will do; an unknown path gets a 404 problem+json.
            wait_until_answering(self.url + "/__ready", self._process, timeout, name="Prism")
        except ServerStartError as exc:
            self.stop()
            raise PrismError(f"{exc}:\n{self.log_text()[-3000:]}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace_seconds=5.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_offset(self) -> int:
        """Where the log ends now: pass it to `log_since` to see one request's lines."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as stream:
            stream.seek(offset)
            return stream.read().decode("utf-8", errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.contract.prism")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help=f"install {PRISM_PACKAGE}@{PRISM_VERSION}")
    mock = commands.add_parser("mock", help="serve a spec until interrupted")
    mock.add_argument("spec", nargs="?", type=Path, default=DERIVED_SPEC)
    mock.add_argument("--port", type=int, default=None)
    mock.add_argument("--log", type=Path, default=Path("prism.log"))
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(ensure_installed())
            return 0
        # SIGTERM unwinds like Ctrl-C, so Prism is stopped rather than left running.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with PrismServer(args.spec, log_path=args.log, port=args.port) as server:
            print(f"Prism {PRISM_VERSION} serving {args.spec} on {server.url} (log: {args.log})")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except PrismError as exc:
        print(f"prism: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make local`: the local stack, kept running, with its endpoints and commands to paste.

Prints an export block first (infra.local_stack.banner), writes `state.json` for the CLI and
`env.sh` for `source` into `.local-stack/` (or `$LOCAL_STACK_DIR`: infra.local_stack.paths),
and runs until Ctrl-C, SIGTERM or SIGHUP (its terminal closed), which stop it, say so, and
remove both files (a state file left behind points at a dead stack) if they are still its own.
A directory holding a running stack's state is not taken over (infra.local_stack.paths).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.local_stack import paths
from infra.local_stack.banner import banner, export_block, exports
from infra.local_stack.quiet import quiet_functions
from infra.local_stack.stack import LocalStack
from infra.local_stack.url_functions import url_function_ids
from infra.sam.template import load_template
from infra.servers import LOOPBACK, StopSignal

AWS_PORT_VARIABLE = "LOCAL_AWS_PORT"
OPENAI_PORT_VARIABLE = "LOCAL_OPENAI_PORT"
WEBHOOK_PORT_VARIABLE = "LOCAL_WEBHOOK_PORT"  # the function URL; only with a URL function
DEFAULT_PORTS = {AWS_PORT_VARIABLE: 4566, OPENAI_PORT_VARIABLE: 8089, WEBHOOK_PORT_VARIABLE: 4568}
EXIT_USAGE = 2
# The README's examples name these; seeded so its commands act on real (emulated) batches.
README_BATCHES = ("batch_abc123", "batch_def456")


class PortInUse(Exception):
    pass


def port_from_env(variable: str) -> int:
    raw = os.environ.get(variable, "").strip() or str(DEFAULT_PORTS[variable])
    try:
        port = int(raw)
    except ValueError:
        raise PortInUse(f"{variable}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise PortInUse(f"{variable}={port} is not a port number (0-65535; 0 picks a free one)")
    return port


def ensure_free(port: int, variable: str) -> None:
    """Fail at once on a taken port: moto's server thread would die on it and leave the start
    waiting forever. (Checked with SO_REUSEADDR, as the servers bind: TIME_WAIT is no clash.)"""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            raise PortInUse(
                f"port {port} is in use (another `make local`?): stop that one, or move this"
                f" one with {variable}=<port> (0 picks a free one)"
            ) from None


def port_variables(template: dict[str, Any]) -> list[str]:
    """The port variables this template's stack listens on (no URL function: no webhook port)."""
    if url_function_ids(template):
        return list(DEFAULT_PORTS)
    return [variable for variable in DEFAULT_PORTS if variable != WEBHOOK_PORT_VARIABLE]


def main() -> int:
    template = load_template()
    try:
        ports = {variable: port_from_env(variable) for variable in port_variables(template)}
        for variable, port in ports.items():
            ensure_free(port, variable)
    except PortInUse as exc:
        print(f"make local: {exc}", file=sys.stderr)
        return EXIT_USAGE
    directory, other = paths.choose_state_dir(ports[AWS_PORT_VARIABLE])
    if other is not None:
        # stderr: stdout starts with the export block, which names the directory used.
        print(
            f"make local: {paths.state_dir()} holds the state of a running local stack"
            f" (pid {other}); this one keeps its files in {directory} (set"
            f" {paths.STATE_DIR_VARIABLE} to choose)",
            file=sys.stderr,
            flush=True,
        )
    state_file, env_file = paths.state_file(directory), paths.env_file(directory)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    # The functions' JSON logs and EMF metric lines: not the terminal's.
    log = paths.log_file(directory).open("a", encoding="utf-8")
    quiet_functions(log)
    # From here on, SIGINT (even in a background job), SIGTERM and SIGHUP end wait().
    stop = StopSignal()
    stack = LocalStack(
        aws_port=ports[AWS_PORT_VARIABLE],
        openai_port=ports[OPENAI_PORT_VARIABLE],
        webhook_port=ports.get(WEBHOOK_PORT_VARIABLE, 0),
        template=template,
    ).start()
    owner = paths.new_owner()
    try:
        seeded = _seed(stack)
        state = {**stack.state(), paths.OWNER_KEY: owner}
        variables = exports(state, stack.openai.url, directory.resolve())
        state_file.write_text(json.dumps(state, indent=2))
        env_file.write_text(export_block(variables) + "\n")
        print(banner(variables, seeded, directory.resolve(), AWS_PORT_VARIABLE), flush=True)
        stop.wait()
        print("local stack stopping (signal received)", flush=True)
    finally:
        # Only its own: another stack's state is never removed.
        removed = paths.owned_by(state_file, owner)
        if removed:
            for path in (state_file, env_file):
                path.unlink(missing_ok=True)
        stack.stop()
        log.close()
    left = "removed" if removed else "left (not this stack's state any more)"
    print(f"local stack stopped; {left} {state_file}", flush=True)
    return 0


def _seed(stack: LocalStack) -> list[str]:
    # Old enough and labelled for the README's sweep (--older-than 20h --metadata project=evals).
    created = int((datetime.now(UTC) - timedelta(hours=21)).timestamp())
    for batch_id in README_BATCHES:
        stack.openai.seed(batch_id, created_at=created, metadata={"project": "evals"})
    return [*README_BATCHES, *(stack.openai.seed(status="in_progress")["id"] for _ in range(3))]


if __name__ == "__main__":
    sys.exit(main())

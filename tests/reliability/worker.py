"""The worker process: the function, in-process, behind an emulated SQS event source.

`python -m tests.reliability.worker --moto-url URL --queue-url URL --state-dir DIR ...` runs
until SIGTERM. Like a Lambda execution environment it builds the function once from its
environment (the runner sets AWS_ENDPOINT_URL to the fault proxy), then handles one batch of
messages per invocation, and it stops an invocation at its deadline as Lambda does: the whole
process exits (status TIMEOUT_EXIT), as a timed-out environment is reset. The runner runs
several at once on one queue, SIGKILLs them at random moments and starts new ones (cold starts).

What it did is written to `worker-<incarnation>.json` in the state directory after every
step (atomically, so a SIGKILL never leaves half a file), including whether the function is
running right now, which the runner uses to kill it mid-invocation; which messages each
invocation handled goes to `deliveries-<incarnation>.tsv` (`tests.reliability.deliveries`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

from tests.reliability import announce_journal
from tests.reliability.deliveries import TIMEOUT, DeliveryLog, deliveries_path
from tests.reliability.duplicating_source import ConcurrentCopies, SkippingDeletes

CALM_FILE = "calm"  # present: the faults are over, stop duplicating messages
REGION = "us-east-1"
TIMEOUT_EXIT = 124  # the worker stopped an invocation at its deadline
log = logging.getLogger("tests.reliability.worker")


@dataclass
class WorkerState:
    incarnation: int
    pid: int
    invocations: int = 0
    messages: int = 0
    failed_messages: int = 0
    handler_errors: int = 0
    skipped_deletes: int = 0
    released_copies: int = 0  # messages made visible again while their invocation ran
    handler_seconds: float = 0.0
    longest_invocation: float = 0.0
    in_handler: bool = False
    timed_out: bool = False


def state_path(state_dir: Path, incarnation: int) -> Path:
    return state_dir / f"worker-{incarnation}.json"


def read_states(state_dir: Path) -> list[WorkerState]:
    """Every incarnation's last written state, in order."""
    states = [
        WorkerState(**json.loads(path.read_text())) for path in state_dir.glob("worker-*.json")
    ]
    return sorted(states, key=lambda state: state.incarnation)


def read_state(state_dir: Path, incarnation: int) -> WorkerState | None:
    try:
        return WorkerState(**json.loads(state_path(state_dir, incarnation).read_text()))
    except (FileNotFoundError, ValueError):
        return None


class _StateFile:
    def __init__(self, state_dir: Path, state: WorkerState) -> None:
        self._path = state_path(state_dir, state.incarnation)
        self._temp = self._path.with_suffix(".tmp")
        self.state = state
        self._lock = threading.Lock()
        self.write()

    def write(self) -> None:
        with self._lock:
            self._temp.write_text(json.dumps(asdict(self.state)))
            os.replace(self._temp, self._path)  # atomic: readers never see half a file


class _Deadline:
    """Lambda stops an invocation at its deadline, whatever it is doing: the claims' leases
    rely on it (no PutEvents of a delivery after its lease). So does this, by exiting."""

    def __init__(self, on_expiry: Callable[[], None]) -> None:
        self._at: float | None = None
        self._on_expiry = on_expiry
        threading.Thread(target=self._watch, name="deadline", daemon=True).start()

    def arm(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def disarm(self) -> None:
        self._at = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.01)
            at = self._at
            if at is not None and time.monotonic() >= at:
                self._on_expiry()
                os._exit(TIMEOUT_EXIT)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.worker")
    parser.add_argument("--moto-url", required=True, help="SQS for the event source (direct)")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--incarnation", type=int, default=1)
    parser.add_argument("--redelivery-probability", type=float, default=0.0)
    parser.add_argument("--concurrent-copy-probability", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--batching-window", type=float, default=0.0)
    parser.add_argument("--function-timeout", type=float, default=30.0)
    parser.add_argument("--read-timeout", type=float, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.read_timeout is not None:
        # Harness-only: the client's read timeout (30 s) is a constant, not a setting. Shortened,
        # the emulator's delayed answers become real read timeouts within a short run.
        from batch_canceller import openai_api

        openai_api.READ_TIMEOUT_SECONDS = args.read_timeout
    announce_journal.install(announce_journal.journal_path(args.state_dir, args.incarnation))
    from batch_canceller.handler import get_application, lambda_handler
    from infra.local_stack.sqs_event_source import SqsEventSource

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    report = _StateFile(args.state_dir, WorkerState(args.incarnation, os.getpid()))
    deliveries = DeliveryLog(deliveries_path(args.state_dir, args.incarnation))
    # The event source is Lambda's poller, not the function: it talks to moto directly.
    sqs = boto3.session.Session(region_name=REGION).client("sqs", endpoint_url=args.moto_url)
    # A different seed per incarnation, so a restarted worker does not replay the same choices.
    seed = args.seed * 1000 + args.incarnation
    deletes = SkippingDeletes(sqs, args.redelivery_probability, seed=seed)
    copies = ConcurrentCopies(sqs, args.queue_url, args.concurrent_copy_probability, seed=-seed)
    current: dict[str, Any] = {"messages": [], "nonce": None}
    wrapped: set[int] = set()  # the application whose nonces are recorded (built once)

    def record_nonce(draw: Callable[[], str]) -> Callable[[], str]:
        def drawn() -> str:
            nonce = draw()
            current["nonce"] = nonce
            deliveries.begin(nonce, current["messages"])
            return nonce

        return drawn

    def timed_out() -> None:
        if current["nonce"] is not None:
            deliveries.end(current["nonce"], TIMEOUT)
        report.state.timed_out = True
        report.write()
        print("invocation stopped at its deadline", file=sys.stderr, flush=True)

    deadline = _Deadline(timed_out)

    def handler(event: dict[str, Any], context: Any) -> Any:
        deadline.arm(context.get_remaining_time_in_millis() / 1000.0)
        report.state.in_handler = True
        report.state.invocations += 1
        report.state.messages += len(event["Records"])
        report.write()
        began = time.monotonic()
        current["messages"] = [record["messageId"] for record in event["Records"]]
        current["nonce"] = None
        try:
            copies.release_some(event["Records"])
            application = get_application()  # the cold start, on the first invocation
            if id(application) not in wrapped:
                application.new_nonce = record_nonce(application.new_nonce)
                wrapped.add(id(application))
            return lambda_handler(event, context)
        finally:
            deadline.disarm()
            if current["nonce"] is not None:
                deliveries.end(current["nonce"])
            took = time.monotonic() - began
            report.state.in_handler = False
            report.state.handler_seconds += took
            report.state.longest_invocation = max(report.state.longest_invocation, took)
            report.state.released_copies = copies.released
            report.write()

    source = SqsEventSource(
        deletes,
        args.queue_url,
        handler,
        batch_size=args.batch_size,
        batching_window_seconds=args.batching_window,
        function_timeout_seconds=args.function_timeout,
        region=REGION,
    )
    calm = args.state_dir / CALM_FILE
    while not stop.is_set():
        if (deletes.enabled or copies.enabled) and calm.exists():
            deletes.enabled = copies.enabled = False
        try:
            result = source.poll_once(wait_seconds=1)
        except Exception:
            # SQS itself failing is not what this run tests; try again shortly.
            log.exception("polling the queue failed")
            time.sleep(0.5)
            continue
        report.state.failed_messages += result.failed
        report.state.handler_errors += result.handler_errors
        report.state.skipped_deletes = deletes.skipped
        report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())

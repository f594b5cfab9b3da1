"""The two phases of a chaos run: under chaos until everything is done (or a time limit), then
with the faults off until the queue is empty."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.fault_proxy import FaultProxy
from tests.reliability.config import ChaosConfig
from tests.reliability.sender import Sender, queue_depth
from tests.reliability.stack import ChaosStack
from tests.reliability.supervisor import Kill, WorkerSupervisor
from tests.reliability.tally import (
    CANCELLED,
    FAILED,
    FINISHED,
    EventLog,
    emulator_statuses,
    scan_records,
)
from tests.reliability.worker import CALM_FILE
from tests.reliability.workload import Workload
from tests.support import client

TICK_SECONDS = 0.2
CHECK_EVERY_SECONDS = 3.0
REPORT_EVERY_SECONDS = 15.0
MAX_WORKER_CRASHES = 3  # workers that keep dying on their own end the run early


def control(base: str, method: str, path: str, body: Any = None) -> Any:
    """A call to the emulator's control plane."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def expected_events(workload: Workload) -> dict[str, str]:
    expected = dict.fromkeys(workload.cancel_ids, CANCELLED)
    expected.update(dict.fromkeys(workload.finished_ids, FINISHED))
    expected.update(dict.fromkeys(workload.missing_ids, FAILED))
    return expected


@dataclass
class RunLoop:
    """The state the loops need; the servers themselves are owned by `run`'s ExitStack."""

    config: ChaosConfig
    workload: Workload
    stack: ChaosStack
    control: str
    proxies: dict[str, FaultProxy]
    sender: Sender
    events: EventLog
    supervisor: WorkerSupervisor
    say: Callable[[str], None]
    sqs: Any = field(init=False)
    dynamodb: Any = field(init=False)
    expected: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        # The runner reads moto directly, never through the faulty proxies.
        self.sqs = client("sqs", self.stack.aws_url)
        self.dynamodb = client("dynamodb", self.stack.dynamodb_url)
        self.expected = expected_events(self.workload)

    def announced(self) -> int:
        return sum(1 for key in self.expected.items() if key in self.events.ids)

    def complete(self) -> bool:
        """Every batch terminal in the emulator, recorded and announced; the DLQ filled."""
        if not self.sender.done or self.announced() < len(self.expected):
            return False
        records = scan_records(self.dynamodb, self.stack.table_name)
        if any(r.pending for r in records.values()):
            return False
        cancelled = {b for b, r in records.items() if r.status == "cancelled"}
        if any(b not in cancelled for b in self.workload.cancel_ids):
            return False
        statuses = emulator_statuses(self.control)
        if any(statuses.get(b) != "cancelled" for b in self.workload.cancel_ids):
            return False
        dlq = self.sqs.get_queue_attributes(
            QueueUrl=self.stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(dlq["Attributes"]["ApproximateNumberOfMessages"]) >= len(self.workload.invalid)

    def chaos_phase(self, started: float) -> float | None:
        """Until complete or the time limit; returns when it completed, if it did."""
        config = self.config
        # Kills land at random points of progress, so they hit the run mid-flight.
        thresholds = sorted(self.supervisor.rng.uniform(0.05, 0.7) for _ in range(config.kills))
        last_check = last_report = 0.0
        while self.supervisor.crashes <= MAX_WORKER_CRASHES:
            elapsed = time.monotonic() - started
            if elapsed >= config.time_limit:
                return None
            self.sender.send_due(self.announced())
            self.events.drain(limit=500)
            progress = self.announced() / len(self.expected)
            # Also by time, so a stuck run is still killed before the limit.
            if thresholds and (
                progress >= thresholds[0] or elapsed >= thresholds[0] * config.time_limit
            ):
                thresholds.pop(0)
                kill = self.supervisor.kill_mid_invocation(elapsed)
                self.say(f"{elapsed:6.1f} s  SIGKILL {describe_kill(kill)}")
            self.supervisor.keep_running()
            if elapsed - last_report >= REPORT_EVERY_SECONDS:
                last_report = elapsed
                self.say(self._progress_line(elapsed))
            if not thresholds and elapsed - last_check >= CHECK_EVERY_SECONDS:
                last_check = elapsed
                if self.complete():
                    self.say(f"{elapsed:6.1f} s  complete under chaos")
                    return elapsed
            time.sleep(TICK_SECONDS)
        return None

    def stop_faults(self) -> None:
        control(self.control, "DELETE", "/faults")
        for proxy in self.proxies.values():
            proxy.clear_rules()
        (self.supervisor.state_dir / CALM_FILE).touch()

    def settle_phase(self) -> tuple[bool, float]:
        """Faults off: send what is left, then wait for an empty queue twice in a row (late
        redeliveries, postponed messages and delayed status checks count as not empty)."""
        started = time.monotonic()
        empty_in_a_row = 0
        last_report = 0.0
        while (elapsed := time.monotonic() - started) < self.config.settle_limit:
            if self.supervisor.crashes > MAX_WORKER_CRASHES:
                break
            self.sender.send_due(self.announced())
            self.supervisor.keep_running()
            self.events.drain()
            if self.sender.done and sum(queue_depth(self.sqs, self.stack.queue_url)) == 0:
                empty_in_a_row += 1
                if empty_in_a_row >= 2:
                    return True, elapsed
            else:
                empty_in_a_row = 0
            if elapsed - last_report >= REPORT_EVERY_SECONDS:
                last_report = elapsed
                self.say(f"settling: {self._progress_line(elapsed)}")
            time.sleep(1.0)
        return False, time.monotonic() - started

    def _progress_line(self, elapsed: float) -> str:
        visible, in_flight, delayed = queue_depth(self.sqs, self.stack.queue_url)
        return (
            f"{elapsed:6.1f} s  announced {self.announced()}/{len(self.expected)}"
            f"  commands sent {self.sender.sent}/{self.sender.total}"
            f"  queue: visible {visible} in flight {in_flight} delayed {delayed}"
            f"  kills {len(self.supervisor.kills)}"
        )


def describe_kill(kill: Kill) -> str:
    where = "mid-invocation" if kill.mid_invocation else "between invocations"
    return (
        f"worker {kill.incarnation} at {kill.at:.1f} s ({kill.wall}), {where},"
        f" {kill.accepted_unmarked} event(s) accepted by PutEvents and not yet marked announced"
        f" ({kill.in_announce_window} between PutEvents and the mark, requests in flight"
        " included)"
    )

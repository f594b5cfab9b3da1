"""`python -m tests.reliability.chaos [--batches 2000] [--seed N]`: the function under chaos.

Starts the local stack (moto, twice, and the OpenAI emulator in processes of their own; fault
proxies in front of moto in this one), a worker process running the function behind an emulated
SQS event source, and sends thousands of cancellations plus a known set of invalid inputs while:
the API fails on a fifth of its calls, PutEvents fails outright or in part, DynamoDB throttles
UpdateItem, SQS delivers some messages twice, and the worker is SIGKILLed mid-invocation and
restarted. It runs until every batch is cancelled, recorded and announced (or a time limit),
stops the faults, lets the queue drain, and prints a table. Exit status 1 unless nothing was
lost, nothing was announced twice and the DLQ holds exactly the invalid inputs (each at least
once: SQS can deliver one twice, so it can be dead-lettered twice; the table counts copies).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from infra.fault_proxy import FaultProxy, Rule
from tests.reliability import announce_journal, moto_server
from tests.reliability.processes import Child
from tests.reliability.stack import ChaosStack, create_stack
from tests.reliability.tally import (
    CANCELLED,
    FAILED,
    FINISHED,
    EventLog,
    Outcome,
    check_dead_letters,
    check_events,
    emf_totals,
    emulator_fault_counts,
    emulator_statuses,
    explain_duplicates,
    read_dead_letters,
    render,
    scan_records,
)
from tests.reliability.worker import CALM_FILE, read_state, read_states
from tests.reliability.workload import Message, Workload, build_workload
from tests.support import API_KEY, client

EMULATOR_READY = "OpenAI emulator listening on "
TICK_SECONDS = 0.2
CHECK_EVERY_SECONDS = 3.0
REPORT_EVERY_SECONDS = 15.0
MAX_WORKER_CRASHES = 3  # a worker that keeps dying on its own ends the run early
# The proxy operations worth showing next to the faults injected into them.
SHOWN_CALLS = (
    "Events.PutEvents",
    "DynamoDB.UpdateItem",
    "DynamoDB.BatchGetItem",
    "SQS.SendMessageBatch",
    "SQS.SendMessage",
)


@dataclass(frozen=True)
class ChaosConfig:
    batches: int = 2000
    finished: int = 20  # already completed: each announced `Batch Finished Before Cancel`
    missing: int = 20  # unknown to the API (404): each announced `Batch Cancel Failed`
    seed: int = 1
    api_fault_rate: float = 0.2
    put_events_error_probability: float = 0.05
    put_events_partial_probability: float = 0.1
    put_events_fail_fraction: float = 0.3
    update_item_throttle_probability: float = 0.1
    redelivery_probability: float = 0.05
    kills: int = 3
    avoid_announce_window: bool = False  # see WorkerSupervisor.kill_mid_invocation
    visibility_timeout: int = 5
    max_receive_count: int = 20
    cancel_delay_seconds: float = 2.0
    read_timeout_seconds: float = 1.0
    max_in_flight: int = 16
    # Lambda allows up to 10,000 per batch with a window of 1 s or more (the template's 10 is a
    # deployment choice); a bigger batch spreads the fault-induced waits over more work.
    batch_size: int = 100
    batching_window_seconds: float = 1.0
    function_timeout_seconds: float = 30.0
    # Commands are sent while fewer batches than this are sent but not yet announced (default:
    # three invocations' worth) and the queue is shallower than twice that.
    max_open_batches: int | None = None
    time_limit_seconds: float | None = None  # of the chaos phase
    settle_limit_seconds: float | None = None

    @property
    def time_limit(self) -> float:
        if self.time_limit_seconds is not None:
            return self.time_limit_seconds
        # Receipts double the messages the worker handles: 8 min for 2,000.
        return max(60.0, 0.24 * self.batches)

    @property
    def open_batches(self) -> int:
        return self.max_open_batches or max(60, 3 * self.batch_size)

    @property
    def settle_limit(self) -> float:
        # Enough to finish, without faults, whatever the chaos phase left.
        if self.settle_limit_seconds is not None:
            return self.settle_limit_seconds
        return max(60.0, 0.1 * self.batches)

    def describe(self, invalid: int) -> list[str]:
        return [
            f"chaos run: {self.batches} batches to cancel (+{self.finished} already finished,"
            f" +{self.missing} unknown to the API), {invalid} invalid inputs, seed {self.seed}",
            f"function: MAX_IN_FLIGHT {self.max_in_flight}, POLL_INITIAL_DELAY_SECONDS 1,"
            " POLL_MAX_DELAY_SECONDS 2, DEAD_LETTER_QUEUE_URL set; API read timeout"
            f" {self.read_timeout_seconds:g} s (harness: shortened from 30 s)",
            f"queue: visibility timeout {self.visibility_timeout} s, redrive maxReceiveCount"
            f" {self.max_receive_count} (high enough that chaos alone does not dead-letter"
            f" valid work); event source batch size {self.batch_size} (window"
            f" {self.batching_window_seconds:g} s), function timeout"
            f" {self.function_timeout_seconds:g} s",
            f"faults: {self.api_fault_rate:.0%} of API calls (429/500/503/read timeout/reset/"
            f"malformed); PutEvents HTTP 500 p={self.put_events_error_probability:g}, partial"
            f" p={self.put_events_partial_probability:g} (fail_fraction"
            f" {self.put_events_fail_fraction:g}); UpdateItem throttled"
            f" p={self.update_item_throttle_probability:g}; {self.redelivery_probability:.0%}"
            f" of handled messages redelivered; {self.kills} SIGKILL(s) of the worker"
            f" ({'never' if self.avoid_announce_window else 'also'} between PutEvents and"
            " the announced mark);"
            f" emulator cancel delay {self.cancel_delay_seconds:g} s",
        ]


@dataclass
class Kill:
    at: float  # seconds into the run
    wall: str  # UTC, to compare with the events' `time`
    incarnation: int
    mid_invocation: bool
    # Events PutEvents had (or was being sent) that the record did not yet say were announced.
    in_announce_window: int


@dataclass
class WorkerSupervisor:
    """Keeps exactly one worker process running; kills and restarts it on request."""

    config: ChaosConfig
    moto_url: str
    queue_url: str
    env: dict[str, str]
    work_dir: Path
    state_dir: Path
    rng: random.Random
    incarnation: int = 0
    crashes: int = 0
    kills: list[Kill] = field(default_factory=list)
    _child: Child | None = None

    def start(self) -> None:
        self.incarnation += 1
        config = self.config
        args = [
            "--moto-url",
            self.moto_url,
            "--queue-url",
            self.queue_url,
            "--state-dir",
            str(self.state_dir),
            "--incarnation",
            str(self.incarnation),
            "--redelivery-probability",
            str(config.redelivery_probability),
            "--seed",
            str(config.seed),
            "--batch-size",
            str(config.batch_size),
            "--batching-window",
            str(config.batching_window_seconds),
            "--function-timeout",
            str(config.function_timeout_seconds),
            "--read-timeout",
            str(config.read_timeout_seconds),
        ]
        self._child = Child(
            f"worker-{self.incarnation}",
            "tests.reliability.worker",
            args,
            log_path=self.work_dir / "worker.log",
            env=self.env,
        ).start()

    def keep_running(self) -> None:
        """A worker that died on its own is a finding; it is restarted so the run goes on."""
        if self._child is not None and not self._child.alive:
            self.crashes += 1
            self._child.stop()
            self.start()

    def kill_mid_invocation(self, now: float, patience: float = 15.0) -> Kill:
        """SIGKILL at a random moment while the function is running, then start a new one.

        With `avoid_announce_window`, not while an event is between PutEvents and the write
        that marks it announced: a kill there duplicates it by design (at-least-once).
        """
        assert self._child is not None
        mid = False
        give_up = time.monotonic() + patience
        while time.monotonic() < give_up and not mid:
            if self._in_handler():
                # Not at the very start of the invocation: somewhere inside it.
                time.sleep(self.rng.uniform(0.0, 0.6))
                mid = self._in_handler()
                if mid and self.config.avoid_announce_window and self._in_window():
                    mid = False
            else:
                time.sleep(0.02)
        in_window = self._in_window()
        self._child.kill()
        wall = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._child.stop()
        kill = Kill(now, wall, self.incarnation, mid, in_window)
        self.kills.append(kill)
        self.start()
        return kill

    def _in_handler(self) -> bool:
        state = read_state(self.state_dir, self.incarnation)
        return state is not None and state.in_handler

    def _in_window(self) -> int:
        path = announce_journal.journal_path(self.state_dir, self.incarnation)
        return len(announce_journal.in_window(announce_journal.read(path)))

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM lets the current invocation finish (by default within the function's
        timeout), then SIGKILL."""
        if self._child is not None:
            limit = self.config.function_timeout_seconds + 5 if timeout is None else timeout
            self._child.stop(timeout=limit)
            self._child = None


def _control(base: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def _worker_env(
    stack: ChaosStack, proxies: dict[str, FaultProxy], api_base: str, config: ChaosConfig
) -> dict[str, str]:
    """The function's configuration, as the template would set it, pointed at the local stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        {
            # Every AWS call of the function goes through a fault proxy.
            "AWS_ENDPOINT_URL": proxies["aws"].url,
            "AWS_ENDPOINT_URL_DYNAMODB": proxies["dynamodb"].url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "batch-canceller",
            "POWERTOOLS_METRICS_NAMESPACE": "BatchCancellerChaos",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "BATCHES_TABLE_NAME": stack.table_name,
            "EVENT_BUS_NAME": stack.bus_name,
            "CANCEL_QUEUE_URL": stack.queue_url,
            "DEAD_LETTER_QUEUE_URL": stack.dlq_url,
            "OPENAI_API_KEY_SECRET_ID": stack.secret_id,
            "OPENAI_BASE_URL": api_base,
            "POLL_INITIAL_DELAY_SECONDS": "1",
            "POLL_MAX_DELAY_SECONDS": "2",
            "MAX_IN_FLIGHT": str(config.max_in_flight),
        }
    )
    return env


def _fault_rules(config: ChaosConfig) -> list[tuple[str, Rule]]:
    """(proxy, rule); the first matching rule that fires wins, so PutEvents fails one way."""
    put_events_error = Rule(
        operation="Events.PutEvents",
        action="http_error",
        status=500,
        times=None,
        probability=config.put_events_error_probability,
        seed=config.seed + 1,
    )
    put_events_partial = Rule(
        operation="Events.PutEvents",
        action="put_events_partial",
        fail_fraction=config.put_events_fail_fraction,
        times=None,
        probability=config.put_events_partial_probability,
        seed=config.seed + 2,
    )
    throttle = Rule(
        operation="DynamoDB.UpdateItem",
        action="throttle",
        times=None,
        probability=config.update_item_throttle_probability,
        seed=config.seed + 3,
    )
    return [("aws", put_events_error), ("aws", put_events_partial), ("dynamodb", throttle)]


class _Sender:
    """Sends the messages ten at a time, keeping the pipeline short.

    A batch costs about three messages (its command's share and two status checks), and moto's
    SQS costs grow with the queue's depth (every send and receive scans the queue): sending
    everything at once would measure moto, not the function. So commands go out while fewer
    than `max_open` of the batches sent are still unannounced and the queue is not too deep.
    """

    def __init__(
        self, sqs: Any, queue_url: str, messages: list[Message], max_open: int, max_depth: int
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._chunks = [messages[i : i + 10] for i in range(0, len(messages), 10)]
        self._max_open = max_open
        self._max_depth = max_depth
        self._next = 0
        self.total = len(messages)
        self.sent = 0
        self.batches_sent = 0
        self.invalid_ids: dict[str, str] = {}  # SQS MessageId -> body

    @property
    def done(self) -> bool:
        return self._next >= len(self._chunks)

    def send_due(self, announced: int) -> None:
        if self.done:
            return
        depth = sum(_queue_depth(self._sqs, self._url))
        while (
            not self.done
            and depth < self._max_depth
            and self.batches_sent - announced < self._max_open
        ):
            chunk = self._chunks[self._next]
            self._send(chunk)
            self._next += 1
            depth += len(chunk)

    def _send(self, chunk: list[Message]) -> None:
        answer = self._sqs.send_message_batch(
            QueueUrl=self._url,
            Entries=[{"Id": str(i), "MessageBody": m.body} for i, m in enumerate(chunk)],
        )
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused a command: {answer['Failed']}")
        self.sent += len(chunk)
        self.batches_sent += sum(m.batches for m in chunk)
        for entry in answer["Successful"]:
            message = chunk[int(entry["Id"])]
            if not message.valid:
                self.invalid_ids[entry["MessageId"]] = message.body


def _expected_events(workload: Workload) -> dict[str, str]:
    expected = dict.fromkeys(workload.cancel_ids, CANCELLED)
    expected.update(dict.fromkeys(workload.finished_ids, FINISHED))
    expected.update(dict.fromkeys(workload.missing_ids, FAILED))
    return expected


def _queue_depth(sqs: Any, queue_url: str) -> tuple[int, int, int]:
    names = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(names))
    visible, in_flight, delayed = (int(attributes["Attributes"].get(n, 0)) for n in names)
    return visible, in_flight, delayed


@dataclass
class _Run:
    """The state the loops need; the servers themselves are owned by `run`'s ExitStack."""

    config: ChaosConfig
    workload: Workload
    stack: ChaosStack
    control: str
    proxies: dict[str, FaultProxy]
    sender: _Sender
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
        self.expected = _expected_events(self.workload)

    def announced(self) -> int:
        return sum(1 for key in self.expected.items() if key in self.events.ids)

    def complete(self) -> bool:
        """Every batch terminal in the emulator, recorded and announced; the DLQ filled."""
        if not self.sender.done or self.announced() < len(self.expected):
            return False
        records = scan_records(self.dynamodb, self.stack.table_name)
        if any(r.pending for r in records.values()):
            return False
        if any(
            (records.get(b) or _NO_RECORD).status != "cancelled" for b in self.workload.cancel_ids
        ):
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
                self.say(f"{elapsed:6.1f} s  SIGKILL {_describe(kill)}")
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
        _control(self.control, "DELETE", "/faults")
        for proxy in self.proxies.values():
            proxy.clear_rules()
        (self.supervisor.state_dir / CALM_FILE).touch()

    def settle_phase(self) -> tuple[bool, float]:
        """Faults off: send what is left, then wait for an empty queue twice in a row (late
        redeliveries and delayed status checks count as not empty)."""
        started = time.monotonic()
        empty_in_a_row = 0
        while time.monotonic() - started < self.config.settle_limit:
            if self.supervisor.crashes > MAX_WORKER_CRASHES:
                break
            self.sender.send_due(self.announced())
            self.supervisor.keep_running()
            self.events.drain()
            if self.sender.done and sum(_queue_depth(self.sqs, self.stack.queue_url)) == 0:
                empty_in_a_row += 1
                if empty_in_a_row >= 2:
                    return True, time.monotonic() - started
            else:
                empty_in_a_row = 0
            time.sleep(1.0)
        return False, time.monotonic() - started

    def _progress_line(self, elapsed: float) -> str:
        visible, in_flight, delayed = _queue_depth(self.sqs, self.stack.queue_url)
        return (
            f"{elapsed:6.1f} s  announced {self.announced()}/{len(self.expected)}"
            f"  commands sent {self.sender.sent}/{self.sender.total}"
            f"  queue: visible {visible} in flight {in_flight} delayed {delayed}"
            f"  kills {len(self.supervisor.kills)}"
        )


class _NoRecord:
    status = None


_NO_RECORD = _NoRecord()


def _start_servers(
    config: ChaosConfig, work_dir: Path, cleanup: contextlib.ExitStack
) -> tuple[str, str, str]:
    """moto twice and the emulator, each in its own process; their URLs."""
    urls = []
    for name in ("moto", "moto-dynamodb"):
        server = Child(
            name,
            "tests.reliability.moto_server",
            [],
            log_path=work_dir / f"{name}.log",
            ready_prefix=moto_server.READY_PREFIX,
        )
        cleanup.enter_context(server)
        urls.append(server.ready_line.removeprefix(moto_server.READY_PREFIX))
    emulator = Child(
        "emulator",
        "infra.openai_emulator",
        ["--port", "0", "--cancel-delay", str(config.cancel_delay_seconds)],
        log_path=work_dir / "emulator.log",
        ready_prefix=EMULATOR_READY,
    )
    cleanup.enter_context(emulator)
    return urls[0], urls[1], emulator.ready_line.removeprefix(EMULATOR_READY)


def run(config: ChaosConfig, work_dir: Path, say: Callable[[str], None] | None = None) -> Outcome:
    """One chaos run; every process and server it starts is stopped before it returns."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    rng = random.Random(config.seed)
    workload = build_workload(config.batches, config.finished, config.missing, rng)
    state_dir = work_dir / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        aws_url, dynamodb_url, api_base = _start_servers(config, work_dir, cleanup)
        control = api_base.removesuffix("/v1") + "/_emulator"
        proxies = {
            "aws": cleanup.enter_context(FaultProxy(upstream=aws_url)),
            "dynamodb": cleanup.enter_context(FaultProxy(upstream=dynamodb_url)),
        }
        stack = create_stack(
            aws_url,
            dynamodb_url,
            API_KEY,
            visibility_timeout=config.visibility_timeout,
            max_receive_count=config.max_receive_count,
        )
        # The key goes over the control plane, never on a command line.
        _control(control, "POST", "/config", {"api_keys": [API_KEY]})
        seeds = [{"batch_id": b, "status": "in_progress"} for b in workload.cancel_ids]
        seeds += [{"batch_id": b, "status": "completed"} for b in workload.finished_ids]
        _control(control, "POST", "/seed", {"batches": seeds})

        supervisor = WorkerSupervisor(
            config,
            aws_url,
            stack.queue_url,
            _worker_env(stack, proxies, api_base, config),
            work_dir,
            state_dir,
            random.Random(config.seed + 4),
        )
        # On an error or interrupt there is nothing left to count: do not wait long.
        cleanup.callback(supervisor.stop, 2.0)
        supervisor.start()

        chaos = {
            "rate": config.api_fault_rate,
            "seed": config.seed,
            "read_timeout": config.read_timeout_seconds,
        }
        _control(control, "POST", "/chaos", chaos)
        for proxy_name, rule in _fault_rules(config):
            proxies[proxy_name].add_rule(rule)

        sqs = client("sqs", aws_url)
        sender = _Sender(
            sqs,
            stack.queue_url,
            workload.messages(rng),
            max_open=config.open_batches,
            max_depth=2 * config.open_batches,
        )
        events = EventLog(sqs, stack.capture_queue_url)
        loop = _Run(config, workload, stack, control, proxies, sender, events, supervisor, say)
        started = time.monotonic()
        completed_at = loop.chaos_phase(started)
        chaos_seconds = time.monotonic() - started

        say(f"{chaos_seconds:6.1f} s  faults off, settling")
        loop.stop_faults()
        settled, settle_seconds = loop.settle_phase()
        supervisor.stop()  # nothing may change while it is counted
        events.drain()

        outcome = Outcome(
            commands_valid=len(workload.commands),
            commands_invalid=len(sender.invalid_ids),
            batches_requested=len(workload.requested_ids),
            cancel_expected=len(workload.cancel_ids),
            finished_expected=len(workload.finished_ids),
            missing_expected=len(workload.missing_ids),
            complete_under_chaos_after=completed_at,
            chaos_seconds=chaos_seconds,
            settle_seconds=settle_seconds,
            settled=settled,
            kills_wanted=config.kills,
        )
        _count(outcome, loop)
        return outcome
    raise AssertionError("unreachable")  # for type checkers: the with block returns


def _count(outcome: Outcome, loop: _Run) -> None:
    workload = loop.workload
    statuses = emulator_statuses(loop.control)
    outcome.emulator_cancelled = sum(statuses.get(b) == "cancelled" for b in workload.cancel_ids)
    records = scan_records(loop.dynamodb, loop.stack.table_name)
    outcome.records_cancelled = sum(
        (records.get(b) or _NO_RECORD).status == "cancelled" for b in workload.cancel_ids
    )
    outcome.records_finished = sum(
        (records.get(b) or _NO_RECORD).status == "completed" for b in workload.finished_ids
    )
    outcome.records_failed = sum(
        b in records and records[b].has_error for b in workload.missing_ids
    )
    outcome.records_pending = sum(1 for r in records.values() if r.pending)
    check_events(outcome, loop.events, loop.expected)
    check_dead_letters(
        outcome, read_dead_letters(loop.sqs, loop.stack.dlq_url), loop.sender.invalid_ids
    )
    outcome.api_faults = emulator_fault_counts(loop.control)
    faults: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for proxy in loop.proxies.values():
        faults.update(proxy.faults_injected)
        calls.update(proxy.calls)
    outcome.aws_faults = {name.replace(":", " "): count for name, count in sorted(faults.items())}
    outcome.aws_calls = {name: calls.get(name, 0) for name in SHOWN_CALLS}
    state_dir = loop.supervisor.state_dir
    states = read_states(state_dir)
    outcome.invocations = sum(s.invocations for s in states)
    outcome.messages_received = sum(s.messages for s in states)
    outcome.messages_failed = sum(s.failed_messages for s in states)
    outcome.handler_errors = sum(s.handler_errors for s in states)
    outcome.redeliveries_injected = sum(s.skipped_deletes for s in states)
    receipts = emf_totals(
        loop.supervisor.work_dir / "worker.log", ("PublicationReceipts", "EventsConfirmedByReceipt")
    )
    outcome.receipts_handled = receipts["PublicationReceipts"]
    outcome.events_marked_by_receipt = receipts["EventsConfirmedByReceipt"]
    supervisor = loop.supervisor
    outcome.kills = len(supervisor.kills)
    outcome.kills_mid_invocation = sum(k.mid_invocation for k in supervisor.kills)
    outcome.worker_crashes = supervisor.crashes
    explain_duplicates(outcome, state_dir, {k.incarnation for k in supervisor.kills})
    traced = Counter(i for d in outcome.duplicates for i in d.killed_incarnations)
    outcome.notes += [
        f"kill: {_describe(k)}; {traced[k.incarnation]} duplicate(s) traced to it"
        for k in supervisor.kills
    ]


def _describe(kill: Kill) -> str:
    where = "mid-invocation" if kill.mid_invocation else "between invocations"
    return (
        f"worker {kill.incarnation} at {kill.at:.1f} s ({kill.wall}), {where},"
        f" up to {kill.in_announce_window} event(s) between PutEvents and the announced mark"
    )


def _parser() -> argparse.ArgumentParser:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batches", type=int, default=defaults.batches)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="messages per invocation (the template deploys 10; give a longer --time-limit)",
    )
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of chaos")
    parser.add_argument(
        "--kill-outside-announce-window",
        action="store_true",
        help="never SIGKILL between a PutEvents and the write marking its events announced",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep them even on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Only local endpoints are used; fake credentials make sure no real account is reachable.
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through every cleanup

    signal.signal(signal.SIGTERM, on_sigterm)
    config = ChaosConfig(
        batches=args.batches,
        seed=args.seed,
        kills=args.kills,
        batch_size=args.batch_size,
        time_limit_seconds=args.time_limit,
        avoid_announce_window=args.kill_outside_announce_window,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        outcome = run(config, work_dir)
    except KeyboardInterrupt:
        print(f"chaos run interrupted; logs: {work_dir}", file=sys.stderr, flush=True)
        return 130
    except BaseException:
        print(f"chaos run aborted; logs: {work_dir}", file=sys.stderr, flush=True)
        raise
    print(render(outcome, config.describe(outcome.commands_invalid)), flush=True)
    if outcome.passed and not args.keep_logs:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"logs: {work_dir}", flush=True)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())

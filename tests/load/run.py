"""One mode of a load run: fresh servers, K worker processes, every command sent at once, then
wait until every batch is announced cancelled (or the time limit) and read what happened.

The chaos harness does the work (tests.reliability): moto twice and the emulator in processes
of their own (`Child`), the workers (`WorkerSupervisor`, `tests.reliability.worker`: the
function behind an emulated SQS event source, its deadline enforced), the stack
(`create_stack`) and the capture queue (`EventLog`). Nothing here injects a fault: the only
adversary is the API's rate limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.load.config import LoadConfig
from tests.load.measure import Raw
from tests.reliability import moto_server
from tests.reliability.chaos import EMULATOR_READY
from tests.reliability.config import ChaosConfig
from tests.reliability.phases import control
from tests.reliability.processes import Child
from tests.reliability.sender import queue_depth
from tests.reliability.stack import ChaosStack, create_stack
from tests.reliability.supervisor import WorkerSupervisor
from tests.reliability.tally import CANCELLED, EventLog, emf_totals
from tests.reliability.worker import read_states
from tests.support import API_KEY, client

REPORT_EVERY_SECONDS = 15.0
SETTLE_SECONDS = 30.0  # after the last announcement: receipts and marks drain
# No announcement for longer than a visibility timeout and nothing visible or delayed: what
# is left will not come back within the run.
STALL_MARGIN_SECONDS = 30.0


def batch_ids(count: int) -> list[str]:
    return [f"batch_load_{i:05d}" for i in range(count)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_servers(
    config: LoadConfig, work_dir: Path, cleanup: contextlib.ExitStack, servers: dict[str, Child]
) -> tuple[str, str, str]:
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
        servers[name] = server
        urls.append(server.ready_line.removeprefix(moto_server.READY_PREFIX))
    args = ["--port", "0", "--cancel-delay", str(config.cancel_delay)]
    args += ["--latency", str(config.latency), "--rate-limit", str(config.rate)]
    args += ["--burst", str(config.burst_tokens)]
    emulator = Child(
        "emulator",
        "infra.openai_emulator",
        args,
        log_path=work_dir / "emulator.log",
        ready_prefix=EMULATOR_READY,
    )
    cleanup.enter_context(emulator)
    servers["emulator"] = emulator
    return urls[0], urls[1], emulator.ready_line.removeprefix(EMULATOR_READY)


def _worker_env(
    stack: ChaosStack, api_base: str, config: LoadConfig, adaptive: bool
) -> dict[str, str]:
    """The function's configuration as the template sets it, pointed at the local stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": stack.aws_url,
            "AWS_ENDPOINT_URL_DYNAMODB": stack.dynamodb_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "batch-canceller",
            "POWERTOOLS_METRICS_NAMESPACE": "BatchCancellerLoad",
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
            "RECEIPT_GRACE_SECONDS": str(config.receipt_grace),
            "ADAPTIVE_CONCURRENCY": "true" if adaptive else "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _supervisor_config(config: LoadConfig) -> ChaosConfig:
    """The chaos harness's knobs for its workers, with every fault off."""
    return ChaosConfig(
        consumers=config.workers,
        kills=0,
        redelivery_probability=0.0,
        concurrent_copy_probability=0.0,
        batch_size=config.batch_size,
        batching_window_seconds=config.batching_window,
        function_timeout_seconds=config.function_timeout,
        read_timeout_seconds=30.0,  # the client's own
    )


def _send_all(sqs: Any, queue_url: str, ids: list[str], per_command: int) -> dict[str, float]:
    """Every command at once, ten to a SendMessageBatch; the epoch each ID was sent at."""
    sent_at: dict[str, float] = {}
    commands = [ids[i : i + per_command] for i in range(0, len(ids), per_command)]
    for start in range(0, len(commands), 10):
        chunk = commands[start : start + 10]
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"batch_ids": command})}
            for n, command in enumerate(chunk)
        ]
        now = time.time()
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused a command: {answer['Failed']}")
        sent_at.update({batch_id: now for command in chunk for batch_id in command})
    return sent_at


def _only_hidden(sqs: Any, queue_url: str) -> bool:
    visible, _, delayed = queue_depth(sqs, queue_url)
    return visible == 0 and delayed == 0


def _stored(dynamodb: Any, table: str) -> dict[str, tuple[str | None, str | None]]:
    """batch_id -> (status, updated_at) for every record, read from moto directly."""
    found: dict[str, tuple[str | None, str | None]] = {}
    request: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "ProjectionExpression": "batch_id, #s, updated_at",
        "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        page = dynamodb.scan(**request)
        for item in page.get("Items", []):
            found[item["batch_id"]["S"]] = (
                item.get("status", {}).get("S"),
                item.get("updated_at", {}).get("S"),
            )
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def run_mode(config: LoadConfig, adaptive: bool, work_dir: Path, say: Callable[[str], None]) -> Raw:
    """One mode; every process it starts is stopped before it returns."""
    mode = "adaptive" if adaptive else "fixed"
    work_dir.mkdir(parents=True, exist_ok=True)
    state_dir = work_dir / "state"
    state_dir.mkdir(exist_ok=True)
    ids = batch_ids(config.ids)
    with contextlib.ExitStack() as cleanup:
        servers: dict[str, Child] = {}
        aws_url, dynamodb_url, api_base = _start_servers(config, work_dir, cleanup, servers)
        emulator = api_base.removesuffix("/v1") + "/_emulator"
        stack = create_stack(
            aws_url,
            dynamodb_url,
            API_KEY,
            visibility_timeout=config.visibility_timeout,
            max_receive_count=config.max_receive_count,
        )
        control(emulator, "POST", "/config", {"api_keys": [API_KEY]})
        control(
            emulator,
            "POST",
            "/seed",
            {"batches": [{"batch_id": b, "status": "in_progress"} for b in ids]},
        )
        supervisor = WorkerSupervisor(
            _supervisor_config(config),
            aws_url,
            stack.queue_url,
            _worker_env(stack, api_base, config, adaptive),
            work_dir,
            state_dir,
            random.Random(1),
        )
        cleanup.callback(supervisor.stop, 2.0)
        supervisor.start()
        time.sleep(3.0)  # the workers' imports, so the first poll is not the measured start
        control(emulator, "DELETE", "/rate_limit/counts")
        sqs = client("sqs", aws_url)
        say(f"{mode}: sending {config.commands} commands")
        sent_at = _send_all(sqs, stack.queue_url, ids, config.ids_per_command)
        started = min(sent_at.values())
        events = EventLog(sqs, stack.capture_queue_url)
        wanted = set(ids)

        def announced() -> int:
            return sum(1 for b in wanted if events.ids.get((b, CANCELLED)))

        complete = False
        last_report = 0.0
        stall_after = config.visibility_timeout + STALL_MARGIN_SECONDS
        cpu_before = {name: cpu_seconds(child.pid) for name, child in servers.items()}
        progress = (0, 0.0)  # announced, and when that count last grew
        while (elapsed := time.time() - started) < config.limit_seconds:
            supervisor.keep_running()
            events.drain(limit=2000)
            done = announced()
            if done == len(ids):
                complete = True
                break
            if done > progress[0]:
                progress = (done, elapsed)
            elif elapsed - progress[1] > stall_after and _only_hidden(sqs, stack.queue_url):
                say(f"{mode}: stalled: nothing announced for {stall_after:g} s")
                break
            if elapsed - last_report >= REPORT_EVERY_SECONDS:
                last_report = elapsed
                counts = control(emulator, "GET", "/rate_limit")["counts"]
                visible, in_flight, delayed = queue_depth(sqs, stack.queue_url)
                say(
                    f"{mode}: {elapsed:6.1f} s  announced {done}/{len(ids)}  API requests"
                    f" {counts['requests']} (429: {counts['limited']})  queue: visible"
                    f" {visible}, in flight {in_flight}, delayed {delayed}"
                )
            time.sleep(1.0)
        ended = time.time()
        rate_limit = control(emulator, "GET", "/rate_limit")
        server_cpu = {
            name: cpu_seconds(child.pid) - cpu_before[name] for name, child in servers.items()
        }
        say(f"{mode}: {'complete' if complete else 'time limit'} at {ended - started:.1f} s")
        settle_until = time.monotonic() + SETTLE_SECONDS
        while complete and time.monotonic() < settle_until:
            supervisor.keep_running()
            if sum(queue_depth(sqs, stack.queue_url)) == 0:
                break
            time.sleep(1.0)
        supervisor.keep_running()
        timeouts, crashes = supervisor.timeouts, supervisor.crashes
        supervisor.stop(2.0)
        events.drain()
        dlq = sqs.get_queue_attributes(
            QueueUrl=stack.dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        states = read_states(state_dir)
        return Raw(
            mode=mode,
            ids=ids,
            sent_at=sent_at,
            started=started,
            ended=ended,
            complete=complete,
            stored=_stored(client("dynamodb", dynamodb_url), stack.table_name),
            rate_limit=rate_limit,
            metrics=emf_totals(sorted(work_dir.glob("worker-*.log"))),
            announced={b: len(events.ids.get((b, CANCELLED), ())) for b in ids},
            dead_letters=sum(int(v) for v in dlq.values()),
            timeouts=timeouts,
            crashes=crashes,
            invocations=sum(s.invocations for s in states),
            failed_messages=sum(s.failed_messages for s in states),
            longest_invocation=max((s.longest_invocation for s in states), default=0.0),
            server_cpu=server_cpu,
            load_average=os.getloadavg()[0],
        )
    raise AssertionError("unreachable")  # for type checkers: the with block returns

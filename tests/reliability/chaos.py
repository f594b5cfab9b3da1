"""`python -m tests.reliability.chaos [--batches 2000] [--seed N]`: the function under chaos.

Starts the local stack (moto, twice, and the OpenAI emulator in processes of their own; fault
proxies in front of moto in this one), worker processes running the function behind emulated
SQS event sources (two consumers of one queue, as two concurrent Lambda execution
environments), and sends thousands of cancellations plus a known set of invalid inputs while:
the API fails on a fifth of its calls; PutEvents fails with a 500, is accepted and then loses
its answer, or refuses entries; DynamoDB throttles UpdateItem; SQS delivers some messages twice,
one after the other or to both consumers at once; and a worker is SIGKILLed mid-invocation and
restarted. Leases are short, so messages whose delivery died or failed come back past the lease
and take the claims over. It runs until every batch is cancelled, recorded and announced (or a
time limit), stops the faults, lets the queue drain, and prints a table. Exit status 1 unless
nothing was lost, nothing was announced twice and the DLQ holds exactly the invalid inputs
(each at least once: SQS can deliver one twice, so it can be dead-lettered twice; the table
counts copies).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from infra.fault_proxy import FaultProxy, Rule
from tests.reliability import moto_server
from tests.reliability.config import ChaosConfig
from tests.reliability.counting import count
from tests.reliability.outcome import Outcome
from tests.reliability.phases import RunLoop, control
from tests.reliability.processes import Child
from tests.reliability.report import render
from tests.reliability.sender import Sender
from tests.reliability.stack import ChaosStack, create_stack
from tests.reliability.supervisor import WorkerSupervisor
from tests.reliability.tally import EventLog
from tests.reliability.workload import build_workload
from tests.support import API_KEY, client

__all__ = ["ChaosConfig", "main", "run"]
EMULATOR_READY = "OpenAI emulator listening on "


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
            "RECEIPT_GRACE_SECONDS": str(config.receipt_grace_seconds),
            # Every metric line reaches the log before a SIGKILL can lose it.
            "PYTHONUNBUFFERED": "1",
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
    put_events_dropped = Rule(
        operation="Events.PutEvents",
        action="forward_then_drop",
        times=None,
        probability=config.put_events_drop_probability,
        seed=config.seed + 5,
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
    return [
        ("aws", put_events_error),
        ("aws", put_events_dropped),
        ("aws", put_events_partial),
        ("dynamodb", throttle),
    ]


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
        emulator = api_base.removesuffix("/v1") + "/_emulator"
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
        control(emulator, "POST", "/config", {"api_keys": [API_KEY]})
        seeds = [{"batch_id": b, "status": "in_progress"} for b in workload.cancel_ids]
        seeds += [{"batch_id": b, "status": "completed"} for b in workload.finished_ids]
        control(emulator, "POST", "/seed", {"batches": seeds})

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
        control(emulator, "POST", "/chaos", chaos)
        for proxy_name, rule in _fault_rules(config):
            proxies[proxy_name].add_rule(rule)

        sqs = client("sqs", aws_url)
        sender = Sender(
            sqs,
            stack.queue_url,
            workload.messages(rng),
            max_open=config.open_batches,
            max_depth=2 * config.open_batches,
        )
        events = EventLog(sqs, stack.capture_queue_url)
        loop = RunLoop(config, workload, stack, emulator, proxies, sender, events, supervisor, say)
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
        count(outcome, loop)
        return outcome
    raise AssertionError("unreachable")  # for type checkers: the with block returns


def _parser() -> argparse.ArgumentParser:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batches", type=int, default=defaults.batches)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument(
        "--consumers",
        type=int,
        default=defaults.consumers,
        help="worker processes on the queue (at least 2 for concurrent copies to meet)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="messages per invocation (the template deploys 10; give a longer --time-limit)",
    )
    parser.add_argument(
        "--receipt-grace",
        type=int,
        default=defaults.receipt_grace_seconds,
        help="RECEIPT_GRACE_SECONDS of the function (the queue's visibility timeout follows)",
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
        consumers=args.consumers,
        batch_size=args.batch_size,
        receipt_grace_seconds=args.receipt_grace,
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

"""Throughput: one invocation cancelling N IDs against the emulator at fixed latency, next to a
bare urllib3 client with the same number of requests in flight, measured in the same run.

The function runs twice over: with its AWS calls answered in-process (its own cost: boto3
still serialises, signs and parses every call) and with them going to moto, as deployed.
"""

from __future__ import annotations

import json
import resource
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from statistics import mean
from typing import Any

import urllib3

from tests.bench import steps
from tests.bench.aws import AwsCall, CallLog, EndpointSession, create_stack
from tests.bench.aws_stub import AwsStub, StubSession
from tests.bench.report import Goal, Section, Table, median, ratio
from tests.bench.servers import BENCH_API_KEY, Servers
from tests.bench.sizes import Sizes

BARE, STUBBED, MOTO = "bare", "function, AWS stubbed", "function, AWS on moto"
GOAL = 0.90  # function / bare urllib3 throughput


@dataclass(frozen=True)
class Round:
    client: str
    cancels: int
    seconds: float
    cpu_seconds: float  # user + system of the bench process (moto and the emulator excluded)
    # First cancel arriving at the emulator to the last one answered (function rounds).
    api_seconds: float | None = None
    # A function invocation cut at its first and last PutEvents.
    phases: dict[str, float] | None = None
    aws_calls: dict[str, int] | None = None
    aws_mean_ms: dict[str, float] | None = None

    @property
    def per_second(self) -> float:
        return self.cancels / self.seconds


class BareClient:
    """The floor to compare with: urllib3, a thread pool, a POST per ID, the JSON parsed."""

    def __init__(self, base_url: str, max_in_flight: int) -> None:
        self._base = base_url
        self._pool = urllib3.PoolManager(maxsize=max_in_flight, block=True, retries=False)
        self._executor = ThreadPoolExecutor(max_workers=max_in_flight)
        self._headers = {"Authorization": f"Bearer {BENCH_API_KEY}"}

    def cancel(self, batch_id: str) -> dict[str, Any]:
        answer = self._pool.request(
            "POST", f"{self._base}/batches/{batch_id}/cancel", headers=self._headers
        )
        body: dict[str, Any] = json.loads(answer.data)
        return body

    def cancel_all(self, ids: list[str]) -> list[dict[str, Any]]:
        return list(self._executor.map(self.cancel, ids))

    def close(self) -> None:
        self._executor.shutdown()
        self._pool.clear()


def run(servers: Servers, sizes: Sizes) -> Section:
    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.service import build_application
    from infra.local_stack.lambda_context import LocalLambdaContext

    emulator = servers.emulator
    emulator.configure(latency_seconds=sizes.latency_seconds, cancel_delay_seconds=0.0)
    stack = create_stack(servers.moto.url, BENCH_API_KEY)
    settings = stack.settings(emulator.base_url, MAX_IN_FLIGHT=str(sizes.max_in_flight))
    log = CallLog()
    apps = {
        STUBBED: build_application(
            settings,
            session=StubSession(AwsStub()),  # type: ignore[arg-type]
            api_key=StaticApiKey(BENCH_API_KEY),
        ),
        MOTO: build_application(
            settings,
            session=EndpointSession(servers.moto.url, log),  # type: ignore[arg-type]
            api_key=StaticApiKey(BENCH_API_KEY),
        ),
    }
    bare = BareClient(emulator.base_url, sizes.max_in_flight)

    def invoke(variant: str, ids: list[str]) -> None:
        command = {"batch_ids": ids, "reason": "bench", "requested_by": "bench@example.com"}
        answer = apps[variant].handle(command, LocalLambdaContext(timeout_seconds=900))
        if answer.get("outcomes") != {"cancelled": len(ids)}:
            raise RuntimeError(f"{variant}: not every batch was cancelled: {answer}")

    def function_round(variant: str, count: int) -> Round:
        ids = emulator.seed(count)
        emulator.clear_request_log()
        log.clear()
        cpu = _cpu()
        started = time.perf_counter()
        invoke(variant, ids)
        ended = time.perf_counter()
        cpu = _cpu() - cpu
        arrivals = [r["at"] for r in emulator.request_log() if r["path"].endswith("/cancel")]
        api_seconds = max(arrivals) - min(arrivals) + sizes.latency_seconds
        calls = log.snapshot()
        if not calls:
            return Round(variant, len(ids), ended - started, cpu, api_seconds)
        operations = {c.operation for c in calls}
        return Round(
            variant,
            len(ids),
            ended - started,
            cpu,
            api_seconds,
            _phases(calls, started, ended),
            dict(Counter(c.operation for c in calls)),
            {
                op: 1000 * mean(c.ended - c.started for c in calls if c.operation == op)
                for op in operations
            },
        )

    def bare_round() -> Round:
        ids = emulator.seed(sizes.throughput_ids)
        cpu = _cpu()
        started = time.perf_counter()
        answers = bare.cancel_all(ids)
        seconds = time.perf_counter() - started
        cpu = _cpu() - cpu
        if any(a.get("status") != "cancelled" for a in answers):
            raise RuntimeError("the bare client did not cancel every batch")
        return Round(BARE, len(ids), seconds, cpu)

    try:
        # Warm all three: connections open, boto3 clients built, worker threads started.
        for variant in apps:
            invoke(variant, emulator.seed(sizes.throughput_warmup_ids))
        bare.cancel_all(emulator.seed(sizes.throughput_warmup_ids))
        rounds: list[Round] = []
        measures: list[Callable[[], Round]] = [
            bare_round,
            lambda: function_round(STUBBED, sizes.throughput_ids),
        ]
        for index in range(sizes.throughput_rounds):
            # Alternate the order so that drift in the machine's load hits both alike.
            rounds.extend(m() for m in (measures if index % 2 == 0 else measures[::-1]))
        rounds.append(function_round(MOTO, sizes.throughput_moto_ids))
        emulator.configure(latency_seconds=0.0, cancel_delay_seconds=0.0)
        by_step = steps.measure(emulator, sizes.steps_calls)
    finally:
        bare.close()
    return _section(rounds, sizes, by_step)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _phases(calls: list[AwsCall], started: float, ended: float) -> dict[str, float]:
    puts = [c for c in calls if c.operation == "Events.PutEvents"]
    if not puts:
        return {"cancel_and_save": ended - started, "put_events": 0.0, "mark_announced": 0.0}
    first, last = min(c.started for c in puts), max(c.ended for c in puts)
    return {
        "cancel_and_save": first - started,
        "put_events": last - first,
        "mark_announced": ended - last,
    }


def _section(rounds: list[Round], sizes: Sizes, by_step: steps.StepCpu) -> Section:
    ceiling = sizes.max_in_flight / sizes.latency_seconds
    n = sizes.throughput_ids

    def of(client: str) -> list[Round]:
        return [r for r in rounds if r.client == client]

    rate = {client: median([r.per_second for r in of(client)]) for client in (BARE, STUBBED, MOTO)}
    seconds = {client: median([r.seconds for r in of(client)]) for client in rate}
    api_rate = {
        client: median([r.cancels / r.api_seconds for r in of(client) if r.api_seconds])
        for client in (STUBBED, MOTO)
    }
    table = Table(
        f"Throughput: {n:,} cancels, {sizes.max_in_flight} in flight, emulator latency "
        f"{sizes.latency_seconds * 1000:.0f} ms (median of {sizes.throughput_rounds} rounds;"
        f" on moto: 1 round of {sizes.throughput_moto_ids:,} IDs)",
        ["client", "seconds", "cancels/s", "of ceiling", "/ bare", "CPU/ID", "what it does"],
    )
    cpu_ms = {
        client: median([1000 * r.cpu_seconds / r.cancels for r in of(client)]) for client in rate
    }
    table.add("ceiling (in flight / latency)", None, round(ceiling), "1.00", None, None, None)
    table.add(
        "bare urllib3 client",
        f"{seconds[BARE]:.2f}",
        round(rate[BARE]),
        f"{rate[BARE] / ceiling:.2f}",
        "1.00",
        f"{cpu_ms[BARE]:.2f} ms",
        f"PoolManager(maxsize={sizes.max_in_flight}) + {sizes.max_in_flight} threads, POST only",
    )
    for client, what in (
        (STUBBED, "one direct invoke; AWS answered in-process (boto3 still serialises/signs)"),
        (MOTO, "one direct invoke; DynamoDB writes and events on moto (its own process)"),
    ):
        table.add(
            client,
            f"{seconds[client]:.2f}",
            round(rate[client]),
            f"{rate[client] / ceiling:.2f}",
            f"{rate[client] / rate[BARE]:.2f}",
            f"{cpu_ms[client]:.2f} ms",
            what,
        )
        table.add(
            "  its API phase only",
            None,
            round(api_rate[client]),
            f"{api_rate[client] / ceiling:.2f}",
            f"{api_rate[client] / rate[BARE]:.2f}",
            None,
            "first cancel arriving at the emulator to the last one answered",
        )
    table.notes.extend(
        [
            "per batch the function also makes one conditional UpdateItem (the record), 1/10 of a"
            " PutEvents (Batch Cancelled), and one UpdateItem marking the event announced",
            "the emulator cancels at once (cancel delay 0), so every answer is `cancelled`",
            "CPU/ID: user + system CPU of the bench process per cancelled ID; at the"
            f" template's 1769 MB (one vCPU) the stubbed function's CPU alone caps one invocation"
            f" near {1000 / cpu_ms[STUBBED]:.0f} cancels/s (at 512 MB, ~0.29 vCPU: near"
            f" {0.29 * 1000 / cpu_ms[STUBBED]:.0f})",
            "all clients warmed first (connections open, threads started); the emulator and moto"
            " run in their own processes",
        ]
    )
    figures = steps.RoundFigures(ceiling, rate[BARE], cpu_ms[BARE], rate[STUBBED], cpu_ms[STUBBED])
    bounds = steps.bounds(by_step, figures)
    tables = [
        table,
        steps.table(by_step, cpu_ms[BARE]),
        steps.bound_table(by_step, bounds, figures, GOAL),
    ]
    moto_round = of(MOTO)[0]
    if moto_round.phases is not None:
        tables.append(_breakdown(moto_round))
    # The reference adds, measured in this run, how far one core lets a design that writes
    # each batch through boto3 get, so a NOT MET comes with its reason (the goal stays put).
    cap = f"bare urllib3 reaches ~0.93 of the ceiling; {steps.reference(bounds)}"
    goals = [
        Goal(
            "throughput, function / bare urllib3, AWS stubbed (the function's own cost)",
            ratio(rate[STUBBED], rate[BARE]),
            GOAL,
            ">=",
            cap,
        ),
        Goal(
            "throughput, function / bare urllib3, AWS on moto",
            ratio(rate[MOTO], rate[BARE]),
            GOAL,
            ">=",
            cap,
        ),
    ]
    return Section(
        "throughput",
        tables=tables,
        goals=goals,
        data={
            "ids": n,
            "max_in_flight": sizes.max_in_flight,
            "latency_seconds": sizes.latency_seconds,
            "ceiling_per_second": ceiling,
            "rounds": [{**asdict(r), "per_second": r.per_second} for r in rounds],
            "per_second": rate,
            "api_phase_per_second": api_rate,
            "fraction_of_ceiling": {client: value / ceiling for client, value in rate.items()},
            "ratio_over_bare": {client: value / rate[BARE] for client, value in rate.items()},
            "cpu_ms_per_id": cpu_ms,
            "cpu_ms_per_id_by_step": by_step.by_step,
            "boto3_floor_ms_per_call": by_step.floor,
            "one_core_bound": {key: asdict(bound) for key, bound in bounds.items()},
        },
    )


def _breakdown(moto_round: Round) -> Table:
    assert moto_round.phases is not None
    assert moto_round.aws_calls is not None
    assert moto_round.aws_mean_ms is not None
    table = Table(
        f"Throughput: where the invocation of {moto_round.cancels:,} IDs on moto goes",
        ["phase", "seconds", "share", "what happens"],
    )
    explain = {
        "cancel_and_save": "thread pool: POST .../cancel, then a conditional UpdateItem, per ID",
        "put_events": "PutEvents, ten entries per call, one call after another",
        "mark_announced": "thread pool: one UpdateItem per event marking it announced",
    }
    for phase, seconds in moto_round.phases.items():
        table.add(
            phase.replace("_", " "),
            f"{seconds:.2f}",
            f"{seconds / moto_round.seconds:.0%}",
            explain[phase],
        )
    table.add("whole invocation", f"{moto_round.seconds:.2f}", "100%", None)
    table.notes.append(
        "AWS calls in it, with their mean latency as the function saw it: "
        + ", ".join(
            f"{op} x{count:,} ({moto_round.aws_mean_ms[op]:.1f} ms)"
            for op, count in sorted(moto_round.aws_calls.items())
        )
    )
    table.notes.append(
        "moto spends several ms of CPU per DynamoDB write in one process, so on moto the writes,"
        " not the OpenAI calls, set the pace; the stubbed row above is the function's own cost"
    )
    return table

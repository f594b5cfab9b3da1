"""The function's CPU per cancelled ID, step by step: one thread, AWS answered in-process, each
step timed on its own. Says where the throughput gap to a bare client goes, and what turning
off botocore's client-side parameter validation would save.

It also measures the cheapest DynamoDB call boto3 can make (the "boto3 floor") and turns it
into the best throughput one core allows a design that writes each batch through boto3, so the
goal line says what is reachable at all, in numbers from the same run."""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3

from tests.bench.aws_stub import AwsStub, StubSession
from tests.bench.report import Table, ratio
from tests.bench.servers import BENCH_API_KEY, EmulatorServer

WARMUP = 20
# The function's AWS clients run with validation off (service.aws_config): bounds use that.
AS_DEPLOYED = "off"


@dataclass(frozen=True)
class StepCpu:
    """CPU ms per call, keyed by botocore parameter validation ("on" / "off")."""

    # The function's steps per cancelled ID; they add up to its CPU per ID.
    by_step: dict[str, dict[str, float]]
    # One minimal UpdateItem: not a step of the function, the least any boto3 write costs.
    floor: dict[str, float]


@dataclass(frozen=True)
class RoundFigures:
    """What the throughput rounds measured, as the one-core bound needs it."""

    ceiling_per_second: float  # in flight / latency: no client passes it
    bare_per_second: float
    bare_cpu_ms: float
    function_per_second: float
    function_cpu_ms: float


@dataclass(frozen=True)
class Bound:
    design: str
    cpu_ms_per_id: float
    # CPU-bound rate on one core: a process whose threads share the GIL runs Python on one
    # core at a time, so it cannot finish IDs faster than 1 / (CPU per ID).
    one_core_per_second: float
    # min(latency ceiling, one-core rate) / bare rate: an upper bound on the ratio the goal
    # measures, since a design can pass neither ceiling.
    max_over_bare: float
    measured_over_bare: float | None
    what: str


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_ms(step: Callable[[int], object], calls: int) -> float:
    for index in range(WARMUP):
        step(-1 - index)
    started = _cpu()
    for index in range(calls):
        step(index)
    return 1000 * (_cpu() - started) / calls


def measure(emulator: EmulatorServer, calls: int) -> StepCpu:
    """CPU ms per call of each step and of the boto3 floor, validation on and off."""
    from botocore.config import Config

    from batch_canceller.announcer import EventPublisher, announcement_from
    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.deadline import Deadline
    from batch_canceller.event_ledger import EventLedger
    from batch_canceller.openai_api import ApiEndpoint, OpenAIBatchClient
    from batch_canceller.service import aws_config
    from batch_canceller.store import BatchStore

    ids = iter(emulator.seed(calls + WARMUP + 1))
    batch: dict[str, Any] = json.loads(
        urllib3.request(
            "GET",
            f"{emulator.base_url}/batches/{next(ids)}",
            headers={"Authorization": f"Bearer {BENCH_API_KEY}"},
        ).data
    )
    batch["status"] = "cancelled"
    api = OpenAIBatchClient(
        ApiEndpoint(emulator.base_url), StaticApiKey(BENCH_API_KEY), OpenAIBatchClient.new_pool(4)
    )
    deadline = Deadline.after(3600.0)
    by_step: dict[str, dict[str, float]] = {}
    floor: dict[str, float] = {}
    cancel_ms = _cpu_ms(lambda _: api.cancel_batch(next(ids), deadline), calls)
    for validation in (True, False):
        mode = "on" if validation else "off"
        config = aws_config(32).merge(Config(parameter_validation=validation))
        session = StubSession(AwsStub())
        dynamodb = session.client("dynamodb", config=config)
        store = BatchStore(dynamodb, "bench")
        publisher = EventPublisher(session.client("events", config=config), "bench", "bench")
        record = store.save_batch("batch_bench", batch, "bench", "bench").record
        ten = [announcement_from(record, "Batch Cancelled", "bench/0123456789ab")] * 10
        by_step[mode] = {
            "cancel_batch": cancel_ms,
            **_aws_steps(store, EventLedger(dynamodb, "bench"), publisher, batch, ten, calls),
        }
        floor[mode] = _cpu_ms(_minimal_write(dynamodb), calls)
    return StepCpu(by_step, floor)


def _aws_steps(
    store: Any, ledger: Any, publisher: Any, batch: dict[str, Any], ten: list[Any], calls: int
) -> dict[str, float]:
    return {
        "save_batch": _cpu_ms(lambda i: store.save_batch(f"b{i}", batch, "r", "x"), calls),
        "mark_announced": _cpu_ms(
            lambda i: ledger.mark_announced(f"b{i}", "Batch Cancelled"), calls
        ),
        "publish_per_event": _cpu_ms(lambda _: publisher.put(ten), max(1, calls // 10)) / 10,
    }


def _minimal_write(dynamodb: Any) -> Callable[[int], object]:
    """The cheapest DynamoDB write through boto3: one small SET on a key, no condition, nothing
    returned. Whatever a design stores per batch, each call costs at least this much CPU
    (serialise, sign, send to the stub, parse), so it is a floor for any boto3 write."""

    def write(index: int) -> object:
        return dynamodb.update_item(
            TableName="bench",
            Key={"batch_id": {"S": f"f{index}"}},
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "1"}},
        )

    return write


def table(cpu: StepCpu, bare_cpu_ms: float) -> Table:
    steps = cpu.by_step
    explain = {
        "cancel_batch": "OpenAIBatchClient: POST .../cancel, JSON parsed (emulator, latency 0)",
        "save_batch": "conditional UpdateItem of the record, ALL_NEW parsed back",
        "mark_announced": "UpdateItem marking the event announced",
        "publish_per_event": "a tenth of a PutEvents of ten entries",
    }
    out = Table(
        "Throughput: the function's CPU per cancelled ID, by step (one thread, AWS stubbed)",
        ["step", "CPU/ID", "validation off", "what it is"],
    )
    for step, text in explain.items():
        out.add(step, f"{steps['on'][step]:.3f} ms", f"{steps['off'][step]:.3f} ms", text)
    out.add(
        "sum",
        f"{sum(steps['on'].values()):.3f} ms",
        f"{sum(steps['off'].values()):.3f} ms",
        f"bare urllib3 client in the run above: {bare_cpu_ms:.3f} ms per ID",
    )
    out.add(
        "boto3 floor per call",
        f"{cpu.floor['on']:.3f} ms",
        f"{cpu.floor['off']:.3f} ms",
        "minimal UpdateItem: one small SET on a key, no condition, no ReturnValues (not in sum)",
    )
    out.notes.append(
        "'validation off' = botocore Config(parameter_validation=False) on the AWS clients;"
        " the project's own code (to_attribute, from_attributes) is under 0.1 ms of each write"
    )
    out.notes.append(
        "boto3 floor: the same stubbed client and config as the steps; it is boto3's fixed cost"
        " per call (build, serialise, sign, parse), which no request shape avoids"
    )
    return out


def bounds(cpu: StepCpu, rounds: RoundFigures) -> dict[str, Bound]:
    """The best ratio over bare that one core allows: for designs adding 0, 1 or 2 minimal
    boto3 writes per ID to the bare client's CPU, and for the function itself."""
    floor = cpu.floor[AS_DEPLOYED]
    function_steps = sum(cpu.by_step[AS_DEPLOYED].values())
    measured = rounds.function_per_second / rounds.bare_per_second

    def bound(design: str, cpu_ms: float, what: str, seen: float | None = None) -> Bound:
        one_core = ratio(1000, cpu_ms)
        best = min(rounds.ceiling_per_second, one_core) / rounds.bare_per_second
        return Bound(design, cpu_ms, one_core, best, seen, what)

    return {
        "bare": bound(
            "bare urllib3 client",
            rounds.bare_cpu_ms,
            "CPU/ID from the rounds above; latency-bound, so its own row exceeds 1.00",
            1.0,
        ),
        "bare_plus_1_write": bound(
            "bare + 1 minimal UpdateItem",
            rounds.bare_cpu_ms + floor,
            "any design that records each batch durably, one boto3 call per ID",
        ),
        "bare_plus_2_writes": bound(
            "bare + 2 minimal UpdateItems",
            rounds.bare_cpu_ms + 2 * floor,
            "+ a write marking the event announced (exactly-once announcing)",
        ),
        "function_steps": bound(
            "function, sum of its steps",
            function_steps,
            "the steps table above, validation off (as deployed)",
            measured,
        ),
        "function_as_run": bound(
            "function, as run",
            rounds.function_cpu_ms,
            "CPU/ID of the stubbed rounds above (32 threads: GIL hand-offs included)",
            measured,
        ),
    }


def bound_table(cpu: StepCpu, found: dict[str, Bound], rounds: RoundFigures, goal: float) -> Table:
    out = Table(
        "Throughput: the most one core allows, from the CPU measured above (AWS stubbed)",
        [
            "design",
            "CPU/ID",
            "1-core cancels/s",
            "at most / bare",
            "measured / bare",
            f"can reach {goal:.2f}",
            "what",
        ],
    )
    for b in found.values():
        out.add(
            b.design,
            f"{b.cpu_ms_per_id:.3f} ms",
            round(b.one_core_per_second),
            f"{b.max_over_bare:.2f}",
            None if b.measured_over_bare is None else f"{b.measured_over_bare:.2f}",
            _can_reach(b, goal),
            b.what,
        )
    out.notes.extend(
        [
            "1-core cancels/s = 1000 / CPU ms per ID: threads sharing the GIL run Python on one"
            " core at a time, so a CPU-bound process finishes at most that many IDs per second",
            "at most / bare = min(in flight / latency, 1-core cancels/s) / bare cancels/s: the"
            f" latency ceiling ({rounds.ceiling_per_second:.0f}/s) and the one-core ceiling are"
            " both upper bounds, so the lower one bounds the goal's ratio; bare itself is"
            f" latency-bound ({rounds.bare_per_second:.0f}/s, using"
            f" {rounds.bare_per_second * rounds.bare_cpu_ms / 1000:.2f} of a core)",
            "an upper bound, not a forecast: near a saturated core, queueing for the GIL costs"
            " more, so 'not ruled out' does not mean reachable, while 'no' rules it out on one core",
            _closeness(found, rounds),
            _gap(cpu, found),
            "bounds are per boto3 call and from one-thread CPU, so generous; fewer calls per ID"
            " (TransactWriteItems of many items: all-or-nothing) or more processes would lift them",
        ]
    )
    return out


def _can_reach(bound: Bound, goal: float) -> str:
    if bound.measured_over_bare is not None and bound.measured_over_bare >= goal:
        return "yes (measured)"
    return "no" if bound.max_over_bare < goal else "not ruled out"


def _closeness(found: dict[str, Bound], rounds: RoundFigures) -> str:
    """How near the function runs to its own one-core bound, and whether it is CPU-bound."""
    as_run = found["function_as_run"]
    measured = rounds.function_per_second / rounds.bare_per_second
    busy = rounds.function_per_second * rounds.function_cpu_ms / 1000
    return (
        f"the function reaches {measured:.2f} of bare, {measured / as_run.max_over_bare:.0%} of"
        f" its own one-core bound ({as_run.max_over_bare:.2f}); its stubbed rounds kept"
        f" {busy:.2f} of a core busy (1.00 = one core saturated: CPU-bound)"
    )


def _gap(cpu: StepCpu, found: dict[str, Bound]) -> str:
    """Where the function's CPU per ID goes beyond bare + 2 minimal writes, step by step."""
    steps = cpu.by_step[AS_DEPLOYED]
    floor = cpu.floor[AS_DEPLOYED]
    bare = found["bare"].cpu_ms_per_id
    as_run = found["function_as_run"].cpu_ms_per_id
    parts = {
        "save_batch over a floor write": steps["save_batch"] - floor,
        "mark_announced over a floor write": steps["mark_announced"] - floor,
        "publish_per_event": steps["publish_per_event"],
        "cancel_batch (one thread) against bare (32 threads)": steps["cancel_batch"] - bare,
        "running it (32 threads, the rest of the invocation)": as_run - sum(steps.values()),
    }
    return (
        f"the function spends {as_run - found['bare_plus_2_writes'].cpu_ms_per_id:.2f} ms per"
        " ID more than bare + 2 minimal writes: "
        + ", ".join(f"{name} {value:+.2f} ms" for name, value in parts.items())
    )


def reference(found: dict[str, Bound]) -> str:
    """For the goal line: the one-core bounds, so a NOT MET carries its reason."""
    return (
        "one-core bound, measured: bare + 1 minimal boto3 write/ID"
        f" {found['bare_plus_1_write'].max_over_bare:.2f}, + 2 writes"
        f" {found['bare_plus_2_writes'].max_over_bare:.2f}, the function as run"
        f" {found['function_as_run'].max_over_bare:.2f}"
    )

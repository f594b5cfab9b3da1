"""CPU per cancelled ID only (issue 13): the function as run (one invocation, 32 threads, AWS
stubbed) against the sum of its own steps and against a bare urllib3 POST, in one run.

Not part of `make bench` (its throughput section measures the same rows, with moto besides):
`python -m tests.bench.run --only cpu_per_id`. Process CPU time, not wall time, so other load
on the machine moves the ratios little; compare only figures from one run.
"""

from __future__ import annotations

from typing import Any

from tests.bench import steps
from tests.bench.aws import create_stack
from tests.bench.aws_stub import AwsStub, StubSession
from tests.bench.report import Goal, Section, Table, median, ratio
from tests.bench.servers import BENCH_API_KEY, Servers
from tests.bench.sizes import Sizes
from tests.bench.throughput import BareClient, _cpu

STEPS_GOAL = 1.2  # as run / sum of steps
BARE_GOAL = 3.0  # as run / bare urllib3 POST


def run(servers: Servers, sizes: Sizes) -> Section:
    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.service import build_application
    from infra.local_stack.lambda_context import LocalLambdaContext

    emulator = servers.emulator
    emulator.configure(latency_seconds=sizes.latency_seconds, cancel_delay_seconds=0.0)
    stack = create_stack(servers.moto.url, BENCH_API_KEY)
    settings = stack.settings(emulator.base_url, MAX_IN_FLIGHT=str(sizes.max_in_flight))
    app = build_application(
        settings,
        session=StubSession(AwsStub()),  # type: ignore[arg-type]
        api_key=StaticApiKey(BENCH_API_KEY),
    )
    bare = BareClient(emulator.base_url, sizes.max_in_flight)

    def invoke(ids: list[str]) -> None:
        command = {"batch_ids": ids, "reason": "bench", "requested_by": "bench@example.com"}
        answer = app.handle(command, LocalLambdaContext(timeout_seconds=900))
        if answer.get("outcomes") != {"cancelled": len(ids)}:
            raise RuntimeError(f"not every batch was cancelled: {answer}")

    def cpu_ms_per_id(work: Any, ids: list[str]) -> float:
        started = _cpu()
        work(ids)
        return 1000 * (_cpu() - started) / len(ids)

    try:
        invoke(emulator.seed(sizes.throughput_warmup_ids))
        bare.cancel_all(emulator.seed(sizes.throughput_warmup_ids))
        function_ms: list[float] = []
        bare_ms: list[float] = []
        for index in range(sizes.throughput_rounds):
            pair = [(function_ms, invoke), (bare_ms, bare.cancel_all)]
            for into, work in pair if index % 2 == 0 else pair[::-1]:
                into.append(cpu_ms_per_id(work, emulator.seed(sizes.throughput_ids)))
        emulator.configure(latency_seconds=0.0, cancel_delay_seconds=0.0)
        by_step = steps.measure(emulator, sizes.steps_calls)
        sequenced = _steps_in_sequence(emulator, sizes.steps_calls)
    finally:
        bare.close()
    return _section(sizes, median(function_ms), median(bare_ms), by_step, sequenced)


def _steps_in_sequence(emulator: Any, calls: int) -> float:
    """CPU ms per ID of the same four steps run one after another per ID (one thread, as
    deployed), instead of each in a loop of its own: the loop of one step keeps its code and
    data hot in the CPU's caches, which a real invocation, and this, do not."""
    from botocore.config import Config

    from batch_canceller.announcer import EventPublisher, announcement_from
    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.deadline import Deadline
    from batch_canceller.event_ledger import EventLedger
    from batch_canceller.openai_api import ApiEndpoint, OpenAIBatchClient
    from batch_canceller.service import aws_config
    from batch_canceller.store import BatchStore

    ids = iter(emulator.seed(calls + steps.WARMUP))
    api = OpenAIBatchClient(
        ApiEndpoint(emulator.base_url), StaticApiKey(BENCH_API_KEY), OpenAIBatchClient.new_pool(4)
    )
    deadline = Deadline.after(3600.0)
    config = aws_config(32).merge(Config(parameter_validation=False))
    session = StubSession(AwsStub())
    dynamodb = session.client("dynamodb", config=config)
    store, ledger = BatchStore(dynamodb, "bench"), EventLedger(dynamodb, "bench")
    publisher = EventPublisher(session.client("events", config=config), "bench", "bench")

    def one_id(index: int) -> None:
        batch = api.cancel_batch(next(ids), deadline).body
        record = store.save_batch(f"s{index}", batch, "r", "x").record
        ledger.mark_announced(f"s{index}", "Batch Cancelled")
        if index % 10 == 0:
            publisher.put([announcement_from(record, "Batch Cancelled", "bench/0123456789ab")] * 10)

    return steps._cpu_ms(one_id, calls)


def _section(
    sizes: Sizes, as_run: float, bare: float, by_step: steps.StepCpu, sequenced: float
) -> Section:
    summed = sum(by_step.by_step[steps.AS_DEPLOYED].values())
    table = Table(
        f"CPU per cancelled ID: {sizes.throughput_ids:,} IDs, {sizes.max_in_flight} in flight,"
        f" latency {sizes.latency_seconds * 1000:.0f} ms (median of {sizes.throughput_rounds}"
        " rounds; steps: one thread, latency 0)",
        ["what", "CPU/ID", "as run / this"],
    )
    table.add("function as run (AWS stubbed)", f"{as_run:.3f} ms", "1.00")
    table.add("sum of its steps (validation off)", f"{summed:.3f} ms", f"{as_run / summed:.2f}")
    for step, value in by_step.by_step[steps.AS_DEPLOYED].items():
        table.add(f"  {step}", f"{value:.3f} ms", None)
    table.add(
        "the same steps in sequence per ID", f"{sequenced:.3f} ms", f"{as_run / sequenced:.2f}"
    )
    table.add("bare urllib3 POST + json.loads", f"{bare:.3f} ms", f"{as_run / bare:.2f}")
    table.notes.append("CPU = user + system time of the bench process (resource.getrusage)")
    table.notes.append(
        "steps: each in a loop of its own; 'in sequence': the four one after another per ID,"
        " one thread (what a loop of one step saves in CPU caches is the difference)"
    )
    goals = [
        Goal(
            "CPU/ID, function as run / sum of its steps",
            ratio(as_run, summed),
            STEPS_GOAL,
            "<=",
            f"steps {summed:.3f} ms",
        ),
        Goal(
            "CPU/ID, function as run / bare urllib3 POST",
            ratio(as_run, bare),
            BARE_GOAL,
            "<=",
            f"bare {bare:.3f} ms",
        ),
    ]
    data = {
        "as_run_ms": as_run,
        "steps_sum_ms": summed,
        "bare_ms": bare,
        "steps_in_sequence_ms": sequenced,
        "by_step_ms": by_step.by_step,
    }
    return Section("cpu_per_id", tables=[table], goals=goals, data=data)

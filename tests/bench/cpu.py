"""Client CPU per cancel: the project's `OpenAIBatchClient.cancel_batch` against the `openai`
SDK's `client.batches.cancel`, both driven from one ThreadPoolExecutor, the emulator in its own
process so that only the client's CPU is counted (a bare urllib3 client for reference)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

from tests.bench.report import Goal, Section, Table, median, ratio
from tests.bench.servers import BENCH_API_KEY, Servers
from tests.bench.sizes import Sizes
from tests.bench.throughput import BareClient

PROJECT, SDK, BARE = "project", "sdk", "bare"


@dataclass(frozen=True)
class CpuRound:
    client: str
    calls: int
    user_seconds: float
    system_seconds: float
    wall_seconds: float

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * (self.user_seconds + self.system_seconds) / self.calls


def run(servers: Servers, sizes: Sizes) -> Section:
    import openai

    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.deadline import Deadline
    from batch_canceller.openai_api import ApiEndpoint, OpenAIBatchClient

    emulator = servers.emulator
    emulator.configure(latency_seconds=sizes.cpu_latency_seconds, cancel_delay_seconds=0.0)
    project = OpenAIBatchClient(
        ApiEndpoint(emulator.base_url),
        StaticApiKey(BENCH_API_KEY),
        OpenAIBatchClient.new_pool(sizes.max_in_flight),
    )
    sdk = openai.OpenAI(base_url=emulator.base_url, api_key=BENCH_API_KEY)
    bare = BareClient(emulator.base_url, sizes.max_in_flight)
    deadline = Deadline.after(3600.0)

    def project_cancel(batch_id: str) -> str:
        answer = project.cancel_batch(batch_id, deadline)
        return str(answer.body["status"]) if answer.ok else f"HTTP {answer.status}"

    def sdk_cancel(batch_id: str) -> str:
        return sdk.batches.cancel(batch_id).status

    def bare_cancel(batch_id: str) -> str:
        return str(bare.cancel(batch_id)["status"])

    cancels: dict[str, Callable[[str], str]] = {
        PROJECT: project_cancel,
        SDK: sdk_cancel,
        BARE: bare_cancel,
    }
    executor = ThreadPoolExecutor(max_workers=sizes.max_in_flight, thread_name_prefix="cpu")

    def measure(client: str, count: int) -> CpuRound:
        ids = emulator.seed(count)
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        statuses = list(executor.map(cancels[client], ids))
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        if any(status != "cancelled" for status in statuses):
            raise RuntimeError(f"{client}: not every cancel succeeded: {set(statuses)}")
        return CpuRound(
            client,
            count,
            after.ru_utime - before.ru_utime,
            after.ru_stime - before.ru_stime,
            wall,
        )

    try:
        for client in cancels:  # connections opened, lazy imports done, threads started
            measure(client, sizes.cpu_warmup_calls)
        rounds: list[CpuRound] = []
        order = list(cancels)
        for index in range(sizes.cpu_rounds):
            rotated = order[index % len(order) :] + order[: index % len(order)]
            rounds.extend(measure(client, sizes.cpu_calls) for client in rotated)
    finally:
        executor.shutdown()
        bare.close()
        sdk.close()
    return _section(rounds, sizes)


def _section(rounds: list[CpuRound], sizes: Sizes) -> Section:
    def med(client: str, value: Callable[[CpuRound], float]) -> float:
        return median([value(r) for r in rounds if r.client == client])

    per_call = {c: med(c, lambda r: r.cpu_ms_per_call) for c in (PROJECT, SDK, BARE)}
    table = Table(
        f"Client CPU per cancel: {sizes.cpu_calls:,} cancels each from one ThreadPoolExecutor"
        f"({sizes.max_in_flight}), emulator latency {sizes.cpu_latency_seconds * 1000:.0f} ms"
        f" (median of {sizes.cpu_rounds} rounds)",
        ["client", "CPU/call", "user/call", "sys/call", "wall", "calls/s", "/ SDK"],
    )
    labels = {
        PROJECT: "project OpenAIBatchClient.cancel_batch",
        SDK: f"openai SDK {version('openai')} client.batches.cancel",
        BARE: "bare urllib3 POST + json.loads (reference)",
    }
    for client, label in labels.items():
        table.add(
            label,
            f"{per_call[client]:.3f} ms",
            f"{med(client, lambda r: 1000 * r.user_seconds / r.calls):.3f} ms",
            f"{med(client, lambda r: 1000 * r.system_seconds / r.calls):.3f} ms",
            f"{med(client, lambda r: r.wall_seconds):.2f} s",
            round(med(client, lambda r: r.calls / r.wall_seconds)),
            f"{per_call[client] / per_call[SDK]:.2f}",
        )
    table.notes.extend(
        [
            "CPU = user + system time of the bench process (resource.getrusage) over the round;"
            " the emulator runs in its own process and is not counted",
            "every client warmed first (connections open, lazy imports done); rounds rotate the"
            " order; each call is a POST .../cancel answered `cancelled`",
            "the project's client also validates the ID, applies the deadline and retry policy,"
            " and parses floats as Decimal (what the store needs)",
        ]
    )
    goal = Goal(
        "client CPU per cancel, project / SDK",
        ratio(per_call[PROJECT], per_call[SDK]),
        0.40,
        "<=",
        "bare urllib3 ~0.36 of the SDK's CPU per call",
    )
    data: dict[str, Any] = {
        "calls": sizes.cpu_calls,
        "rounds": [{**asdict(r), "cpu_ms_per_call": r.cpu_ms_per_call} for r in rounds],
        "cpu_ms_per_call": per_call,
        "ratio_project_over_sdk": ratio(per_call[PROJECT], per_call[SDK]),
        "ratio_bare_over_sdk": ratio(per_call[BARE], per_call[SDK]),
    }
    return Section("cpu", tables=[table], goals=[goal], data=data)

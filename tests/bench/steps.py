"""The function's CPU per cancelled ID, step by step: one thread, AWS answered in-process, each
step timed on its own. Says where the throughput gap to a bare client goes, and what turning
off botocore's client-side parameter validation would save."""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from typing import Any

import urllib3

from tests.bench.aws_stub import AwsStub, StubSession
from tests.bench.report import Table
from tests.bench.servers import BENCH_API_KEY, EmulatorServer

WARMUP = 20


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


def measure(emulator: EmulatorServer, calls: int) -> dict[str, dict[str, float]]:
    """CPU ms per call of each step, with botocore's parameter validation on and off."""
    from botocore.config import Config

    from batch_canceller.announcer import EventPublisher, announcement_from
    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.deadline import Deadline
    from batch_canceller.openai_api import ApiEndpoint, OpenAIBatchClient
    from batch_canceller.records import BatchStore
    from batch_canceller.service import aws_config

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
    results: dict[str, dict[str, float]] = {}
    cancel_ms = _cpu_ms(lambda _: api.cancel_batch(next(ids), deadline), calls)
    for validation in (True, False):
        config = aws_config(32).merge(Config(parameter_validation=validation))
        session = StubSession(AwsStub())
        store = BatchStore(session.client("dynamodb", config=config), "bench")
        publisher = EventPublisher(session.client("events", config=config), "bench", "bench")
        record = store.save_batch("batch_bench", batch, "bench", "bench").record
        ten = [announcement_from(record, "Batch Cancelled")] * 10
        results["on" if validation else "off"] = {
            "cancel_batch": cancel_ms,
            **_aws_steps(store, publisher, batch, ten, calls),
        }
    return results


def _aws_steps(
    store: Any, publisher: Any, batch: dict[str, Any], ten: list[Any], calls: int
) -> dict[str, float]:
    return {
        "save_batch": _cpu_ms(lambda i: store.save_batch(f"b{i}", batch, "r", "x"), calls),
        "mark_announced": _cpu_ms(
            lambda i: store.mark_announced(f"b{i}", "Batch Cancelled"), calls
        ),
        "publish_per_event": _cpu_ms(lambda _: publisher.publish(ten), max(1, calls // 10)) / 10,
    }


def table(steps: dict[str, dict[str, float]], bare_cpu_ms: float) -> Table:
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
    out.notes.append(
        "'validation off' = botocore Config(parameter_validation=False) on the AWS clients;"
        " the project's own code (to_attribute, from_attributes) is under 0.1 ms of each write"
    )
    return out

"""End to end on the local stack: N batch IDs in SQS messages, the function run in-process
behind the emulated SQS event source until every batch is `cancelled`, its AWS traffic through
a FaultProxy (no faults) that counts calls; then AWS calls and dollars per cancelled batch."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.bench import pricing
from tests.bench.aws import (
    EndpointSession,
    client,
    create_stack,
    lambda_style,
    queue_depth,
    scan_items,
)
from tests.bench.report import Section, Table
from tests.bench.servers import BENCH_API_KEY, ProxyServer, Servers
from tests.bench.sizes import Sizes


def _memory_gb() -> float:
    """The function's MemorySize in template.yaml, in GB (what Lambda bills by)."""
    from infra.sam.template import load_template

    template = load_template()
    function = template["Resources"]["BatchCancellerFunction"]["Properties"]
    memory = function.get(
        "MemorySize", template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    )
    return float(memory) / 1024


MEMORY_GB = _memory_gb()
EVENT_COUNTS = ("BatchCancelled", "BatchFinishedBeforeCancel", "BatchCancelFailed")

WHO: dict[str, str] = {
    "DynamoDB.UpdateItem": "the record per API answer (the first check's watch in the same"
    " write); watch advance per later check sent; one per event marking it announced"
    " (conditional: not batchable)",
    "DynamoDB.BatchGetItem": "receipts: the pending events of up to 100 batches per call",
    "DynamoDB.GetItem": "only when a failed condition returned no item",
    "SQS.SendMessageBatch": "delayed status checks, batched 10 per call",
    "SQS.ReceiveMessage": "Lambda's SQS event source (emulated: 10 per batch, 1 s long polls)",
    "SQS.DeleteMessageBatch": "Lambda's SQS event source deleting handled messages, 10 per call",
    "SQS.SendMessage": "the DLQ (none expected here)",
    "Events.PutEvents": "follow-up events, batched 10 entries per call",
}


@dataclass
class Run:
    ids: int
    messages: int
    seconds: float = 0.0
    durations: list[float] = field(default_factory=list)
    polls: int = 0
    empty_polls: int = 0
    failed_messages: int = 0
    handler_errors: int = 0
    tally: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)


def run(servers: Servers, sizes: Sizes) -> Section:
    from batch_canceller.api_key import StaticApiKey
    from batch_canceller.service import build_application
    from infra.local_stack.sqs_event_source import SqsEventSource

    emulator, moto = servers.emulator, servers.moto
    emulator.configure(
        latency_seconds=sizes.e2e_latency_seconds,
        cancel_delay_seconds=sizes.e2e_cancel_delay_seconds,
    )
    stack = create_stack(moto.url, BENCH_API_KEY, visibility_timeout=120)
    direct_sqs = client("sqs", moto.url)
    ids = emulator.seed(sizes.e2e_ids)
    bodies = [
        json.dumps({"batch_ids": ids[i : i + sizes.e2e_ids_per_message], "reason": "bench"})
        for i in range(0, len(ids), sizes.e2e_ids_per_message)
    ]
    outcome = Run(len(ids), len(bodies))
    with ProxyServer(moto.url) as proxy:
        settings = stack.settings(
            emulator.base_url,
            MAX_IN_FLIGHT=str(sizes.max_in_flight),
            POLL_INITIAL_DELAY_SECONDS="1",
            POLL_MAX_DELAY_SECONDS="2",
        )
        app = build_application(
            settings,
            session=EndpointSession(proxy.url),  # type: ignore[arg-type]
            api_key=StaticApiKey(BENCH_API_KEY),
        )
        handler = lambda_style(app, outcome.tally)

        def timed(event: dict[str, Any], context: Any) -> Any:
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                outcome.durations.append(time.perf_counter() - started)

        source = SqsEventSource(
            client("sqs", proxy.url),
            stack.queue_url,
            timed,
            batch_size=10,
            function_timeout_seconds=120,
        )
        # The producer's sends go straight to moto: they are the caller's, not the function's.
        for start in range(0, len(bodies), 10):
            direct_sqs.send_message_batch(
                QueueUrl=stack.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": body}
                    for i, body in enumerate(bodies[start : start + 10])
                ],
            )
        proxy.reset_counts()
        started = time.perf_counter()
        while True:
            if time.perf_counter() - started > sizes.e2e_timeout_seconds:
                raise RuntimeError(
                    f"not every batch was cancelled within {sizes.e2e_timeout_seconds:.0f} s"
                )
            polled = source.poll_once(wait_seconds=1)
            if polled.received:
                outcome.polls += 1
                outcome.failed_messages += polled.failed
                outcome.handler_errors += polled.handler_errors
                continue
            outcome.empty_polls += 1
            if queue_depth(direct_sqs, stack.queue_url) == 0:
                break
        outcome.seconds = time.perf_counter() - started
        outcome.calls = proxy.calls()
    items = scan_items(client("dynamodb", moto.url), stack.table_name)
    _verify(items, set(ids), queue_depth(direct_sqs, stack.dlq_url))
    return _section(outcome, items, sizes)


def _verify(items: list[dict[str, Any]], ids: set[str], dead_letters: int) -> None:
    statuses = Counter(item["status"]["S"] for item in items if item["batch_id"]["S"] in ids)
    announced = sum(
        "Batch Cancelled" in item.get("announced_events", {}).get("SS", []) for item in items
    )
    pending = sum(bool(item.get("pending_events", {}).get("SS")) for item in items)
    problems = []
    if statuses.get("cancelled", 0) != len(ids):
        problems.append(f"statuses {dict(statuses)} for {len(ids)} IDs")
    if announced != len(ids):
        problems.append(f"{announced} of {len(ids)} Batch Cancelled events marked announced")
    if pending:
        problems.append(f"{pending} items still owe an event")
    if dead_letters:
        problems.append(f"{dead_letters} messages on the DLQ")
    if problems:
        raise RuntimeError("end to end did not finish cleanly: " + "; ".join(problems))


def _section(outcome: Run, items: list[dict[str, Any]], sizes: Sizes) -> Section:
    cancelled = outcome.ids
    per = 1000 / cancelled
    durations = sorted(outcome.durations)
    billed_ms = sum(math.ceil(d * 1000) for d in durations)
    gb_seconds = billed_ms / 1000 * MEMORY_GB
    sizes_bytes = [pricing.item_size(item) for item in items]
    mean_item = sum(sizes_bytes) / len(sizes_bytes)
    largest_item = max(sizes_bytes)
    wru_per_write = pricing.write_units(largest_item)
    calls = outcome.calls
    writes = sum(calls[op] for op in ("DynamoDB.UpdateItem", "DynamoDB.PutItem"))
    events = sum(outcome.tally[name] for name in EVENT_COUNTS)
    # BatchGetItem bills each item read (consistent: 1 RCU per 4 KB), one per receipt.
    reads = calls["DynamoDB.GetItem"] + outcome.tally["PublicationReceipts"]
    # EventBridge's delivery of each event to the queue (a receipt) is an SQS request too.
    sqs_requests = sum(n for op, n in calls.items() if op.startswith("SQS.")) + events
    p95 = durations[min(len(durations) - 1, int(0.95 * len(durations)))]

    run_table = Table(
        f"End to end: {cancelled:,} IDs to `cancelled` on the local stack",
        ["measure", "value"],
    )
    for label, value in (
        (
            "input",
            f"{outcome.messages:,} SQS messages of {sizes.e2e_ids_per_message} IDs;"
            f" emulator latency {sizes.e2e_latency_seconds * 1000:.0f} ms, cancel delay"
            f" {sizes.e2e_cancel_delay_seconds:g} s; POLL_INITIAL_DELAY_SECONDS=1,"
            " POLL_MAX_DELAY_SECONDS=2; event source batch size 10",
        ),
        ("wall time to all cancelled", f"{outcome.seconds:.1f} s"),
        (
            "invocations (non-empty polls)",
            f"{len(durations):,} (+{outcome.empty_polls} empty polls while checks were delayed)",
        ),
        ("OpenAI API calls", f"{outcome.tally['ApiCalls']:,}"),
        (
            "cancel requests / status checks",
            f"{outcome.tally['CancelRequests']:,} / {outcome.tally['StatusChecks']:,}"
            f" ({outcome.tally['StatusChecks'] / cancelled:.2f} checks per batch)",
        ),
        ("messages failed back to SQS", f"{outcome.failed_messages:,}"),
        (
            "result (checked in DynamoDB)",
            f"{cancelled:,}/{cancelled:,} cancelled, each `Batch Cancelled` announced once,"
            " DLQ empty",
        ),
        (
            "Lambda duration per invocation",
            f"mean {1000 * sum(durations) / len(durations):.0f} ms, p95 {1000 * p95:.0f} ms,"
            f" max {1000 * durations[-1]:.0f} ms; {billed_ms / 1000:.1f} s billed in total",
        ),
        (
            "DynamoDB item",
            f"mean {mean_item:.0f} B, largest {largest_item} B -> {wru_per_write} WRU per write",
        ),
    ):
        run_table.add(label, value)
    if cancelled < 5000:
        run_table.notes.append(
            f"{cancelled:,} IDs, not the 5,000 the issue names: on moto every DynamoDB write costs"
            " several ms of CPU, so 5,000 would take minutes alone; per-batch figures do not"
            " depend on N (`python -m tests.bench.run --only end_to_end --e2e-ids 5000`)"
        )
    run_table.notes.append(
        "Lambda duration is the handler's wall time in this process (Powertools decorators and"
        " metrics flush included) with moto and the emulator answering locally; billed at the"
        f" template's {MEMORY_GB * 1024:.0f} MB (one vCPU at 1769 MB); on AWS network calls take"
        " longer"
    )

    calls_table = Table(
        "End to end: AWS calls per cancelled batch (counted by the FaultProxy in front of moto)",
        ["operation", "calls", "per batch", "who makes it / batching"],
    )
    for operation, count in sorted(calls.items()):
        calls_table.add(operation, count, f"{count / cancelled:.3f}", WHO.get(operation, ""))
    calls_table.add("all AWS calls", sum(calls.values()), f"{sum(calls.values()) / cancelled:.3f}")
    calls_table.notes.append(
        "ReceiveMessage and DeleteMessageBatch are Lambda's event source mapping (billed to the"
        " account); the emulated one here long-polls 1 s, so its empty receives while status"
        " checks sit delayed are more than AWS's pollers would make in so short a run"
    )

    lines = [
        (
            pricing.DYNAMODB_WRITE,
            writes * wru_per_write,
            f"{writes:,} writes x {wru_per_write} WRU",
        ),
        (pricing.DYNAMODB_READ, reads * pricing.read_units(largest_item), f"{reads:,} reads"),
        (
            pricing.SQS_REQUEST,
            sqs_requests,
            f"every SQS call here is under 64 KB; {events:,} of them EventBridge delivering receipts",
        ),
        (pricing.EVENTBRIDGE_EVENT, events, "entries put (each under 64 KB)"),
        (pricing.LAMBDA_REQUEST, len(durations), "invocations"),
        (
            pricing.LAMBDA_ARM_GB_SECOND,
            gb_seconds,
            f"{billed_ms / 1000:.1f} s billed x {MEMORY_GB:g} GB",
        ),
    ]
    cost_table = Table(
        f"End to end: cost per 1,000 cancellations (us-east-1 list prices as of"
        f" {pricing.PRICES_AS_OF})",
        ["service", "billed unit", "units per 1,000", "price per million units", "USD per 1,000"],
    )
    total = 0.0
    cost_rows: list[dict[str, Any]] = []
    for price, units, how in lines:
        usd = units * price.usd * per
        total += usd
        cost_table.add(
            price.service,
            f"{price.unit} ({how})",
            f"{units * per:,.1f}",
            f"${price.usd * 1e6:,.4f}" if price.usd * 1e6 < 1000 else f"${price.usd * 1e6:,.2f}",
            f"${usd:.5f}",
        )
        cost_rows.append(
            {"service": price.service, "unit": price.unit, "units": units, "usd_per_1000": usd}
        )
    cost_table.add("total", None, None, None, f"${total:.5f}")
    cost_table.notes.extend(price.rule for price in pricing.ALL_PRICES)
    cost_table.notes.extend(
        [
            pricing.PRICE_SOURCES,
            "not counted: the caller's own SendMessage(Batch) to enqueue the commands; one"
            " Secrets Manager GetSecretValue per container per 5 minutes ($0.05 per 10,000);"
            " CloudWatch Logs/metrics ingestion; free tiers",
        ]
    )
    return Section(
        "end_to_end",
        tables=[run_table, calls_table, cost_table],
        data={
            "ids": cancelled,
            "messages": outcome.messages,
            "wall_seconds": outcome.seconds,
            "invocations": len(durations),
            "empty_polls": outcome.empty_polls,
            "durations_seconds": durations,
            "billed_lambda_ms": billed_ms,
            "gb_seconds": gb_seconds,
            "tally": dict(outcome.tally),
            "aws_calls": dict(calls),
            "aws_calls_per_batch": {op: n / cancelled for op, n in calls.items()},
            "item_bytes_mean": mean_item,
            "item_bytes_max": largest_item,
            "wru_per_write": wru_per_write,
            "cost_usd_per_1000": total,
            "cost_lines": cost_rows,
            "prices_as_of": pricing.PRICES_AS_OF,
            "prices": [
                {"service": p.service, "unit": p.unit, "usd": p.usd, "rule": p.rule}
                for p in pricing.ALL_PRICES
            ],
        },
    )

"""Webhooks against polling, in one run on the local stack: the same N cancellations, polling
only and then with webhooks, the template's default delays and a realistic cancel duration
divided by the same factor. From the emulator's `cancelled` to `Batch Cancelled` on the bus
(p50, p95), OpenAI and AWS calls per cancelled batch, and the status-check GETs still sent for
a batch whose webhook came first."""

from __future__ import annotations

from collections import Counter

from infra.local_stack.announce_timing import percentile
from tests.bench.report import Goal, Section, Table, ratio
from tests.bench.servers import Servers
from tests.bench.sizes import Sizes
from tests.bench.webhook_runs import ModeRun, run_mode, template_defaults

REFERENCE = "local stack, this run"


def run(servers: Servers, sizes: Sizes) -> Section:
    # The local stack runs its own moto and emulator in-process (the receiver and the
    # function URL live there); the bench's servers are not used.
    polling = run_mode(webhooks=False, sizes=sizes)
    pushed = run_mode(webhooks=True, sizes=sizes)
    return _section(polling, pushed, sizes)


def _seconds(run: ModeRun) -> list[float]:
    values = [e.seconds for e in run.endings]
    if any(v is None for v in values):
        raise RuntimeError(f"{run.label}: a batch has no `cancelled` time or no event")
    return [v for v in values if v is not None]


def _section(polling: ModeRun, pushed: ModeRun, sizes: Sizes) -> Section:
    n = sizes.webhook_ids
    divisor = sizes.webhook_scale_divisor
    times = {run.label: _seconds(run) for run in (polling, pushed)}
    stats = {
        label: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "max": max(v)}
        for label, v in times.items()
    }
    first = [e for e in pushed.endings if e.by_webhook]
    checks_after = sum(e.check_gets_after_webhook for e in first)
    defaults = template_defaults()
    low, high = sizes.webhook_cancel_minutes

    table = Table(
        f"Webhooks: {n} cancellations, emulator `cancelled` to `Batch Cancelled` on the bus",
        ["measure", polling.label, pushed.label, "polling / webhooks"],
    )
    for key in ("p50", "p95", "max"):
        p, w = stats[polling.label][key], stats[pushed.label][key]
        table.add(f"{key}, seconds", f"{p:.2f}", f"{w:.2f}", f"{ratio(p, w):.1f}x")
    p50 = stats[polling.label]["p50"]
    table.add(
        "p50 at the template's delays (x divisor)",
        f"{p50 * divisor / 60:.1f} min",
        f"{stats[pushed.label]['p50']:.2f} s (not scaled: no delay in its path)",
        None,
    )
    per = [sum(run.openai_calls.values()) / n for run in (polling, pushed)]
    table.add("OpenAI calls per batch", f"{per[0]:.2f}", f"{per[1]:.2f}", f"{ratio(*per):.1f}x")
    for kind in ("POST cancel", "GET batch"):
        per = [polling.openai_calls[kind] / n, pushed.openai_calls[kind] / n]
        table.add(f"  {kind} per batch", f"{per[0]:.2f}", f"{per[1]:.2f}", None)
    aws = [_aws(run) for run in (polling, pushed)]
    per = [sum(a.values()) / n for a in aws]
    table.add(
        "AWS calls per batch (both functions)",
        f"{per[0]:.2f}",
        f"{per[1]:.2f}",
        f"{ratio(*per):.1f}x",
    )
    table.add(
        "SQS messages handled per batch (invocations)",
        f"{polling.messages / n:.2f} ({polling.invocations})",
        f"{pushed.messages / n:.2f} ({pushed.invocations})",
        None,
    )
    table.add(
        "status checks: sent GET / superseded (no GET)",
        f"{polling.tally['StatusChecks'] - polling.tally['StatusChecksSuperseded']}"
        f" / {polling.tally['StatusChecksSuperseded']}",
        f"{pushed.tally['StatusChecks'] - pushed.tally['StatusChecksSuperseded']}"
        f" / {pushed.tally['StatusChecksSuperseded']}",
        None,
    )
    table.add("ended by the webhook (record ended_by)", "-", f"{len(first)} of {n}", None)
    table.add("status-check GETs after a batch's webhook", "-", checks_after, None)
    table.add(
        "wall time, cancels sent to queue empty",
        f"{polling.wall_seconds:.1f} s",
        f"{pushed.wall_seconds:.1f} s",
        None,
    )
    table.notes.extend(
        [
            f"delays: the template's defaults (PollInitialDelaySeconds {defaults['PollInitialDelaySeconds']},"
            f" PollMaxDelaySeconds {defaults['PollMaxDelaySeconds']}, WebhookFirstCheckDelaySeconds"
            f" {defaults['WebhookFirstCheckDelaySeconds']}) / {divisor}, whole seconds:"
            f" {', '.join(f'{k} {v}' for k, v in pushed.parameters.items())}; the emulator's cancels"
            f" take {low:g}-{high:g} min / {divisor} ({pushed.cancel_seconds[0]:.1f}-"
            f"{pushed.cancel_seconds[-1]:.1f} s), evenly spread over the {n} batches",
            "from: the emulator's own time of the change to `cancelled`; to: the bench's observer"
            " queue on the bus (a rule on the function's source), long-polled, receipt time",
            "polling's figures scale with the divisor, the webhook's do not: its path (emulator ->"
            " function URL -> receiver -> SQS -> canceller: GET, write, PutEvents) has no delay in it",
            "GET batch counts status checks and the webhook notice's refresh (one per batch it ends);"
            " a status check that finds the record already terminal reads it (GetItem) and sends"
            " no GET (superseded)",
            "AWS calls: both functions' own, counted by botocore hooks on their clients; the emulated"
            " SQS event source's ReceiveMessage/DeleteMessageBatch are Lambda's and not counted"
            " (the messages handled row shows what it delivered)",
        ]
    )
    calls = Table(
        "Webhooks: AWS calls per cancelled batch by operation",
        ["operation", polling.label, pushed.label],
    )
    for operation in sorted(set(aws[0]) | set(aws[1])):
        calls.add(operation, f"{aws[0][operation] / n:.3f}", f"{aws[1][operation] / n:.3f}")
    calls.add("all", f"{sum(aws[0].values()) / n:.3f}", f"{sum(aws[1].values()) / n:.3f}")
    calls.notes.append(
        "the receiver's (webhooks only): SendMessage per webhook, GetSecretValue once per container"
    )
    goals = [
        Goal(
            "webhooks: p50 cancelled -> Batch Cancelled, s",
            stats[pushed.label]["p50"],
            2.0,
            "<=",
            REFERENCE,
        ),
        Goal(
            "webhooks: p95 cancelled -> Batch Cancelled, s",
            stats[pushed.label]["p95"],
            5.0,
            "<=",
            REFERENCE,
        ),
        Goal(
            "webhooks: status-check GETs after the webhook",
            float(checks_after),
            0.0,
            "<=",
            REFERENCE,
        ),
    ]
    return Section(
        "webhooks",
        tables=[table, calls],
        goals=goals,
        data={
            "ids": n,
            "scale_divisor": divisor,
            "parameters": pushed.parameters,
            "cancel_seconds": pushed.cancel_seconds,
            "seconds": {label: sorted(v) for label, v in times.items()},
            "stats": stats,
            "openai_calls": {r.label: dict(r.openai_calls) for r in (polling, pushed)},
            "aws_calls": {r.label: dict(a) for r, a in zip((polling, pushed), aws, strict=True)},
            "tally": {r.label: dict(r.tally) for r in (polling, pushed)},
            "messages": {r.label: r.messages for r in (polling, pushed)},
            "invocations": {r.label: r.invocations for r in (polling, pushed)},
            "ended_by_webhook": len(first),
            "status_check_gets_after_webhook": checks_after,
            "wall_seconds": {r.label: r.wall_seconds for r in (polling, pushed)},
        },
    )


def _aws(run: ModeRun) -> Counter[str]:
    return run.canceller_calls + run.receiver_calls

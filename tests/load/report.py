"""The table of a load run, and the adaptive client's goals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.load.measure import SHOWN_METRICS, Result

GOODPUT_GOAL = 0.9  # of R
LIMITED_GOAL = 0.05  # share of API calls answered 429


@dataclass(frozen=True)
class Goal:
    name: str
    met: bool
    correctness: bool  # a failed correctness goal fails the run (exit 1)


def goals(adaptive: Result) -> list[Goal]:
    return [
        Goal(
            f"goodput >= {GOODPUT_GOAL:g} R ({adaptive.goodput:.2f})",
            adaptive.goodput >= GOODPUT_GOAL,
            False,
        ),
        Goal(
            f"<= {LIMITED_GOAL:.0%} of calls answered 429 ({adaptive.limited_share:.1%})",
            adaptive.limited_share <= LIMITED_GOAL,
            False,
        ),
        Goal(f"0 dead-lettered ({adaptive.dead_letters})", adaptive.dead_letters == 0, True),
        Goal(f"0 past deadline ({adaptive.past_deadline})", adaptive.past_deadline == 0, False),
        Goal(f"0 lost ({adaptive.lost})", adaptive.lost == 0, True),
    ]


def correct(adaptive: Result) -> bool:
    return all(goal.met for goal in goals(adaptive) if goal.correctness)


def _cpu(result: Result) -> str:
    names = ("moto-dynamodb", "moto", "emulator")
    wall = max(result.wall_seconds, 1e-9)
    return ", ".join(f"{result.server_cpu.get(n, 0.0) / wall:.2f}" for n in names)


Row = tuple[str, Callable[[Result], str]]
ROWS: list[Row] = [
    ("goodput: non-429 API answers/s / R", lambda r: f"{r.goodput:.2f}"),
    ("  median second / R", lambda r: f"{r.median_second_goodput:.2f}"),
    ("API calls answered 429", lambda r: f"{r.limited_share:.1%} ({r.limited}/{r.requests})"),
    ("cancelled batches/s", lambda r: f"{r.cancelled_per_second:.1f}"),
    ("API answers per cancelled ID", lambda r: f"{r.good / max(1, r.cancelled):.2f}"),
    ("sent -> record stored, p50", lambda r: f"{r.p50_seconds:.1f} s"),
    ("sent -> record stored, p95", lambda r: f"{r.p95_seconds:.1f} s"),
    ("invocations past their deadline", lambda r: str(r.past_deadline)),
    ("  longest invocation", lambda r: f"{r.longest_invocation:.1f} s"),
    ("  DeadlineDeferrals (work sent on)", lambda r: str(r.metrics["DeadlineDeferrals"])),
    ("messages dead-lettered", lambda r: str(r.dead_letters)),
    ("messages failed back to the queue", lambda r: str(r.failed_messages)),
    ("lost (IDs not stored cancelled at the end)", lambda r: str(r.lost)),
    ("announced twice", lambda r: str(r.announced_twice)),
    ("wall time (first sent -> last stored)", lambda r: f"{r.wall_seconds:.1f} s"),
    ("complete", lambda r: "yes" if r.complete else "no: time limit or stalled"),
    ("invocations", lambda r: str(r.invocations)),
    ("worker crashes", lambda r: str(r.crashes)),
    ("CPU s/s: moto DynamoDB, moto, emulator", _cpu),
    ("machine load average (1 min, at the end)", lambda r: f"{r.load_average:.1f}"),
    *[(f"  {name}", lambda r, n=name: str(r.metrics[n])) for name in SHOWN_METRICS],
]


def render(results: list[Result], header: list[str], footer: list[str]) -> str:
    names = [
        r.mode + (" (ADAPTIVE_CONCURRENCY=false)" if r.mode == "fixed" else "") for r in results
    ]
    width = max(len(label) for label, _ in ROWS)
    columns = [
        max(len(n), *(len(cell(r)) for _, cell in ROWS))
        for n, r in zip(names, results, strict=True)
    ]
    lines = [*header, ""]
    lines.append(
        f"| {'':<{width}} | "
        + " | ".join(f"{n:<{c}}" for n, c in zip(names, columns, strict=True))
        + " |"
    )
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * (c + 2) for c in columns) + "|")
    for label, cell in ROWS:
        values = " | ".join(f"{cell(r):<{c}}" for r, c in zip(results, columns, strict=True))
        lines.append(f"| {label:<{width}} | {values} |")
    adaptive = next((r for r in results if r.mode == "adaptive"), None)
    if adaptive is not None:
        lines += ["", "goals for the adaptive client:"]
        lines += [f"  {'MET    ' if g.met else 'NOT MET'}  {g.name}" for g in goals(adaptive)]
    return "\n".join([*lines, *footer])

"""What one mode of a load run measured, computed from what the system holds: the emulator's
counters, the records' stored times, the DLQ, the workers' deadlines and the function's EMF
counts."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The function's own counts worth showing next to the API's.
SHOWN_METRICS = (
    "ApiRateLimited",
    "ApiRetries",
    "InFlightCuts",
    "InFlightEases",
    "BudgetEmptyPauses",
    "RateLimitPauses",
    "RateLimitPausesShared",
    "DeadlineDeferrals",
    "Requeued",
    "StoreFailures",
    "TransientFailures",
)


@dataclass
class Raw:
    """What `run_mode` read; epochs are wall-clock seconds."""

    mode: str
    ids: list[str]
    sent_at: dict[str, float]
    started: float  # the first command sent
    ended: float  # complete, or the time limit
    complete: bool
    stored: dict[str, tuple[str | None, str | None]]  # batch_id -> (status, updated_at)
    rate_limit: dict[str, Any]  # GET /_emulator/rate_limit
    metrics: Counter[str]
    announced: dict[str, int]  # batch_id -> Batch Cancelled events seen
    dead_letters: int
    timeouts: int  # invocations the worker stopped at their deadline
    crashes: int
    invocations: int
    failed_messages: int  # messages an invocation failed back to the queue
    longest_invocation: float
    server_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the run
    load_average: float = 0.0  # the machine's, 1 minute, at the end


@dataclass(frozen=True)
class Second:
    at: int  # seconds since the first command was sent
    good: int  # API answers that were not 429
    limited: int
    max_in_flight: int


@dataclass
class Result:
    mode: str
    rate: float
    ids: int
    complete: bool
    wall_seconds: float
    requests: int
    limited: int
    cancelled: int
    lost: int
    announced_twice: int
    p50_seconds: float
    p95_seconds: float
    dead_letters: int
    past_deadline: int
    crashes: int
    invocations: int
    failed_messages: int
    longest_invocation: float
    metrics: dict[str, int]
    seconds: list[Second] = field(default_factory=list)
    server_cpu: dict[str, float] = field(default_factory=dict)
    load_average: float = 0.0

    @property
    def good(self) -> int:
        return self.requests - self.limited

    @property
    def goodput(self) -> float:
        """API answers other than 429 per second over the run, as a fraction of R."""
        return self.good / self.wall_seconds / self.rate if self.wall_seconds > 0 else 0.0

    @property
    def limited_share(self) -> float:
        return self.limited / self.requests if self.requests else 0.0

    @property
    def cancelled_per_second(self) -> float:
        return self.cancelled / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def median_second_goodput(self) -> float:
        """The median second's non-429 answers over R (the ramp and the tail weigh little)."""
        goods = sorted(s.good for s in self.seconds)
        return percentile([float(g) for g in goods], 50) / self.rate if goods else 0.0


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted `values` (0 when empty)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return values[rank - 1]


def summarise(raw: Raw, rate: float) -> Result:
    cancelled_at = {
        batch_id: epoch(stamp)
        for batch_id, (status, stamp) in raw.stored.items()
        if status == "cancelled" and stamp is not None and batch_id in raw.sent_at
    }
    latencies = sorted(at - raw.sent_at[b] for b, at in cancelled_at.items())
    # The run ends with its last record stored (one cut short: what it did until then).
    end = max(cancelled_at.values()) if cancelled_at else raw.ended
    wall = end - raw.started
    counts = raw.rate_limit["counts"]
    first = int(raw.started)
    by_second = {s["second"]: s for s in raw.rate_limit["per_second"]}
    idle = {"requests": 0, "limited": 0, "max_in_flight": 0}
    seconds = []
    for second in range(first, int(end) + 1):
        s = by_second.get(second, idle)
        seconds.append(
            Second(second - first, s["requests"] - s["limited"], s["limited"], s["max_in_flight"])
        )
    return Result(
        mode=raw.mode,
        rate=rate,
        ids=len(raw.ids),
        complete=raw.complete,
        wall_seconds=wall,
        requests=int(counts["requests"]),
        limited=int(counts["limited"]),
        cancelled=len(cancelled_at),
        lost=len(raw.ids) - len(cancelled_at),
        announced_twice=sum(1 for n in raw.announced.values() if n > 1),
        p50_seconds=percentile(latencies, 50),
        p95_seconds=percentile(latencies, 95),
        dead_letters=raw.dead_letters,
        past_deadline=raw.timeouts,
        crashes=raw.crashes,
        invocations=raw.invocations,
        failed_messages=raw.failed_messages,
        longest_invocation=raw.longest_invocation,
        metrics={name: int(raw.metrics.get(name, 0)) for name in SHOWN_METRICS},
        seconds=seconds,
        server_cpu=raw.server_cpu,
        load_average=raw.load_average,
    )

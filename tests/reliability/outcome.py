"""What a chaos run found: every figure of the final table, and why the run failed, if it did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.reliability.leases import Takeovers, UnmarkedEvents


@dataclass
class Duplicate:
    batch_id: str
    detail_type: str
    count: int
    times: tuple[str, ...]
    cause: str = "unexplained"
    killed_incarnations: list[int] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)  # its journal lines, every worker's, in order

    @property
    def by_kill(self) -> bool:
        return bool(self.killed_incarnations)


@dataclass
class Outcome:
    """Everything the final table shows; `problems` lists why the run failed, if it did."""

    commands_valid: int = 0
    commands_invalid: int = 0
    batches_requested: int = 0
    cancel_expected: int = 0
    finished_expected: int = 0
    missing_expected: int = 0
    emulator_cancelled: int = 0
    records_cancelled: int = 0
    records_finished: int = 0
    records_failed: int = 0
    records_pending: int = 0
    events_per_type: Counter[str] = field(default_factory=Counter)
    duplicates: list[Duplicate] = field(default_factory=list)
    lost_cancellations: list[str] = field(default_factory=list)
    lost_other: list[tuple[str, str]] = field(default_factory=list)
    unexpected_events: list[tuple[str, str]] = field(default_factory=list)
    dlq_total: int = 0
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    dlq_missing: list[str] = field(default_factory=list)
    dlq_unexpected: list[str] = field(default_factory=list)
    dlq_copies: int = 0
    api_faults: dict[str, int] = field(default_factory=dict)
    aws_faults: dict[str, int] = field(default_factory=dict)
    aws_calls: dict[str, int] = field(default_factory=dict)
    redeliveries_injected: int = 0
    # Concurrent copies: messages made visible again as their invocation began, and the
    # messages (and pairs of invocations) that were then handled by two invocations at once.
    copies_released: int = 0
    copies_concurrent: int = 0
    copies_concurrent_pairs: int = 0
    kills: int = 0
    kills_mid_invocation: int = 0
    kills_aimed: int = 0  # with events PutEvents accepted and not yet marked announced
    kills_wanted: int = 0
    worker_crashes: int = 0
    worker_timeouts: int = 0  # invocations stopped at their deadline (the process exits)
    longest_invocation: float = 0.0
    invocations: int = 0
    messages_received: int = 0
    messages_failed: int = 0
    handler_errors: int = 0  # invocations that raised instead of reporting failed messages
    # The function's own metrics (EMF lines in the workers' logs), by name.
    metrics: Counter[str] = field(default_factory=Counter)
    # From the journals and the delivery logs.
    takeovers: Takeovers = field(default_factory=Takeovers)
    unmarked: UnmarkedEvents = field(default_factory=UnmarkedEvents)
    complete_under_chaos_after: float | None = None
    chaos_seconds: float = 0.0
    settle_seconds: float = 0.0
    settled: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def extra_events(self) -> int:
        return sum(d.count - 1 for d in self.duplicates)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.lost_cancellations:
            found.append(f"{len(self.lost_cancellations)} lost cancellations")
        if self.lost_other:
            found.append(f"{len(self.lost_other)} other outcomes never announced")
        if self.duplicates:
            by_kill = sum(d.by_kill for d in self.duplicates)
            found.append(
                f"{self.extra_events} duplicate events for {len(self.duplicates)} batches"
                f" ({by_kill} of them traced to a SIGKILL between PutEvents and the announced"
                " mark)"
            )
        if self.unexpected_events:
            found.append(f"{len(self.unexpected_events)} unexpected events")
        if self.dlq_missing or self.dlq_unexpected:
            found.append(
                f"DLQ is not exactly the invalid inputs ({len(self.dlq_missing)} missing,"
                f" {len(self.dlq_unexpected)} unexpected)"
            )
        if self.emulator_cancelled != self.cancel_expected:
            found.append("not every batch is cancelled in the emulator")
        if self.records_cancelled != self.cancel_expected:
            found.append("not every batch is recorded cancelled")
        if self.records_finished != self.finished_expected:
            found.append("not every finished batch is recorded as such")
        if self.records_failed != self.missing_expected:
            found.append("not every unknown batch is recorded with last_error")
        if self.records_pending:
            found.append(f"{self.records_pending} records still owe events")
        if self.kills < self.kills_wanted:
            found.append(f"only {self.kills} of {self.kills_wanted} kills happened")
        if self.worker_crashes:
            found.append(f"a worker exited {self.worker_crashes} times on its own")
        if any(late < 0 for late in self.takeovers.past_lease):
            found.append("a claim was taken over before its lease ended")
        if not self.settled:
            found.append("the queue never drained after the faults stopped")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems

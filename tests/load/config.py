"""What a load run is: its size, the API's limit and latency, and the function's timing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from infra.sam.template import load_template, properties

REPO_ROOT = Path(__file__).resolve().parents[2]


def template_timeout() -> float:
    """The function's Timeout as template.yaml deploys it: each invocation's real deadline."""
    return float(properties(load_template(), "BatchCancellerFunction")["Timeout"])


@dataclass(frozen=True)
class LoadConfig:
    ids: int = 20_000
    workers: int = 8  # worker processes: concurrent Lambda execution environments
    rate: float = 200.0  # the emulator's limit, requests a second, shared by every caller
    burst: float | None = None  # None: one second's worth (the emulator's default)
    # 100 ms: a real API round trip for a cancel or a retrieve, and R x latency = 20 requests
    # in flight for the 8 invocations, 2.5 each: the window, not its sub-1 floor, is measured.
    latency: float = 0.1
    ids_per_command: int = 100
    # Shorter than the first status check (1 s), so each ID costs one cancel and one GET.
    cancel_delay: float = 0.5
    max_in_flight: int = 32
    function_timeout: float = 120.0
    batch_size: int = 10  # messages per invocation, as the template's QueueBatchSize
    batching_window: float = 1.0  # as the template's QueueMaximumBatchingWindowInSeconds
    # The template's timing rule, Timeout + batching window + RECEIPT_GRACE_SECONDS (60), as the
    # chaos run uses: the deployed 1020 s (6 x Timeout + the largest window) outlasts a run, so
    # a message failed back would never be seen again.
    receipt_grace: int = 60
    max_receive_count: int = 5  # as the template's redrive policy
    time_limit: float | None = None  # per mode; None: twice the ideal plus a visibility timeout

    @property
    def visibility_timeout(self) -> int:
        return math.ceil(self.function_timeout + self.batching_window + self.receipt_grace)

    @property
    def api_calls_per_id(self) -> int:
        return 2  # a cancel (answered `cancelling`) and the status check that finds `cancelled`

    @property
    def ideal_seconds(self) -> float:
        """The shortest run the limit allows: every ID's calls at exactly R."""
        return self.ids * self.api_calls_per_id / self.rate

    @property
    def limit_seconds(self) -> float:
        if self.time_limit is not None:
            return self.time_limit
        return 2 * self.ideal_seconds + self.visibility_timeout  # a failed-back message returns

    @property
    def commands(self) -> int:
        return math.ceil(self.ids / self.ids_per_command)

    @property
    def burst_tokens(self) -> float:
        return self.burst if self.burst is not None else max(1.0, math.floor(self.rate))

    def describe(self) -> str:
        return (
            f"{self.ids} IDs as {self.commands} commands of {self.ids_per_command}, sent at once;"
            f" {self.workers} worker processes (concurrent invocations, {self.batch_size}"
            f" messages each, Timeout {self.function_timeout:g} s from template.yaml, enforced);"
            f" API limit {self.rate:g} requests/s, burst {self.burst_tokens:g}, latency"
            f" {self.latency * 1000:g} ms (429s answered at once), cancel takes"
            f" {self.cancel_delay:g} s; MAX_IN_FLIGHT {self.max_in_flight},"
            " POLL_INITIAL_DELAY_SECONDS 1: 2 API calls per ID; queue visibility timeout"
            f" {self.visibility_timeout} s, maxReceiveCount {self.max_receive_count}; time limit"
            f" {self.limit_seconds:g} s a mode"
        )

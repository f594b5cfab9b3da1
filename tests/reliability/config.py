"""What a chaos run does: its size, its faults and the function's and the queue's timing."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ChaosConfig:
    batches: int = 2000
    finished: int = 20  # already completed: each announced `Batch Finished Before Cancel`
    missing: int = 20  # unknown to the API (404): each announced `Batch Cancel Failed`
    seed: int = 1
    api_fault_rate: float = 0.2
    put_events_error_probability: float = 0.05  # HTTP 500: not published, outcome unknown
    put_events_drop_probability: float = 0.05  # published, then the connection dropped
    put_events_partial_probability: float = 0.1
    put_events_fail_fraction: float = 0.3
    update_item_throttle_probability: float = 0.1
    redelivery_probability: float = 0.05  # handled, the delete skipped: back later
    concurrent_copy_probability: float = 0.05  # visible again as its invocation starts
    consumers: int = 2  # worker processes on the queue: concurrent execution environments
    kills: int = 3
    avoid_announce_window: bool = False  # see WorkerSupervisor.kill_mid_invocation
    max_receive_count: int = 20
    cancel_delay_seconds: float = 2.0
    read_timeout_seconds: float = 1.0
    max_in_flight: int = 16
    # Lambda allows up to 10,000 per batch with a window of 1 s or more (the template's 10 is a
    # deployment choice); a bigger batch spreads the fault-induced waits over more work.
    batch_size: int = 100
    batching_window_seconds: float = 1.0
    # A claim lasts until its invocation's deadline plus the receipt grace: both short here,
    # so that messages whose delivery died or did not learn its PutEvents outcome come back
    # past the lease within the run. The grace must still outlast the receipts' wait in the
    # queue (behind every visible message), or an event is announced twice by design.
    function_timeout_seconds: float = 15.0
    receipt_grace_seconds: int = 20
    # None: the template's timing rule, Timeout + batching window + grace (docs/exactly-once.md),
    # so a message redelivered after a crash finds the dead delivery's claims lapsed.
    visibility_timeout_seconds: int | None = None
    # Commands are sent while fewer batches than this are sent but not yet announced (default:
    # three invocations' worth) and the queue is shallower than twice that.
    max_open_batches: int | None = None
    time_limit_seconds: float | None = None  # of the chaos phase
    settle_limit_seconds: float | None = None

    @property
    def visibility_timeout(self) -> int:
        if self.visibility_timeout_seconds is not None:
            return self.visibility_timeout_seconds
        return math.ceil(
            self.function_timeout_seconds
            + self.batching_window_seconds
            + self.receipt_grace_seconds
        )

    @property
    def lease_seconds(self) -> float:
        """The longest a claim lasts after its invocation starts."""
        return self.function_timeout_seconds + self.receipt_grace_seconds

    @property
    def time_limit(self) -> float:
        if self.time_limit_seconds is not None:
            return self.time_limit_seconds
        # Receipts double the messages the worker handles: 8 min for 2,000.
        return max(60.0, 0.24 * self.batches)

    @property
    def open_batches(self) -> int:
        return self.max_open_batches or max(60, 3 * self.batch_size)

    @property
    def settle_limit(self) -> float:
        # Enough to finish, without faults, whatever the chaos phase left: a few leases and
        # visibility timeouts (a message can wait for one, then the other), then the rest.
        if self.settle_limit_seconds is not None:
            return self.settle_limit_seconds
        return 3 * (self.lease_seconds + self.visibility_timeout) + 0.05 * self.batches

    def describe(self, invalid: int) -> list[str]:
        window = "never" if self.avoid_announce_window else "aimed"
        return [
            f"chaos run: {self.batches} batches to cancel (+{self.finished} already finished,"
            f" +{self.missing} unknown to the API), {invalid} invalid inputs, seed {self.seed}",
            f"function: MAX_IN_FLIGHT {self.max_in_flight}, RECEIPT_GRACE_SECONDS"
            f" {self.receipt_grace_seconds}, POLL_INITIAL_DELAY_SECONDS 1,"
            " POLL_MAX_DELAY_SECONDS 2, DEAD_LETTER_QUEUE_URL set; timeout"
            f" {self.function_timeout_seconds:g} s (enforced: the worker exits at the deadline);"
            f" API read timeout {self.read_timeout_seconds:g} s (harness: shortened from 30 s)",
            f"queue: visibility timeout {self.visibility_timeout} s (timeout + window + grace),"
            f" redrive maxReceiveCount {self.max_receive_count} (high enough that chaos alone"
            f" does not dead-letter valid work); {self.consumers} consumers (worker processes),"
            f" event source batch size {self.batch_size} (window"
            f" {self.batching_window_seconds:g} s)",
            f"faults: {self.api_fault_rate:.0%} of API calls (429/500/503/read timeout/reset/"
            f"malformed); PutEvents HTTP 500 p={self.put_events_error_probability:g},"
            f" accepted-then-dropped p={self.put_events_drop_probability:g}, partial"
            f" p={self.put_events_partial_probability:g} (fail_fraction"
            f" {self.put_events_fail_fraction:g}); UpdateItem throttled"
            f" p={self.update_item_throttle_probability:g}; {self.redelivery_probability:.0%}"
            f" of handled messages redelivered, {self.concurrent_copy_probability:.0%} of"
            f" received ones made visible again at once; {self.kills} SIGKILL(s) of a worker"
            f" mid-invocation ({window} between PutEvents and the announced mark);"
            f" emulator cancel delay {self.cancel_delay_seconds:g} s",
        ]

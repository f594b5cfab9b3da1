"""The work items of a run and their results: what `work` does one of, and the processor,
the announce phase and the requeue read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from batch_canceller.announce_protocol import Delivery
from batch_canceller.commands import StatusCheck
from batch_canceller.deadline import Deadline
from batch_canceller.openai_api import ApiResponse
from batch_canceller.records import BatchRecord
from batch_canceller.webhook_notice import WebhookNotice


@dataclass(frozen=True)
class CancelWork:
    batch_id: str
    reason: str | None = None
    requested_by: str | None = None
    # The cancel_at schedule that fired and sent this cancel: the record's note of it goes.
    schedule: str | None = None


# A cancel, or the function's own per-batch messages: a status check, a webhook notice.
Work = CancelWork | StatusCheck | WebhookNotice


@dataclass(frozen=True)
class WorkItem:
    work: Work
    delivery: Delivery


@dataclass(frozen=True)
class WorkResult:
    work: Work
    delivery: Delivery
    outcome: str
    failure: str | None = None
    record: BatchRecord | None = None
    # The events this work's own write made owed and claimed for its delivery.
    claimed: frozenset[str] = frozenset()
    next_check: StatusCheck | None = None
    # When the work should come back, if not after the queue's visibility timeout.
    retry_after: float | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


class BatchApi(Protocol):
    def cancel_batch(self, batch_id: str, deadline: Deadline) -> ApiResponse: ...

    def retrieve_batch(self, batch_id: str, deadline: Deadline) -> ApiResponse: ...

"""From a batch's end in the OpenAI emulator to its `Batch Cancelled` on the bus, per batch:
when it ended (the emulator's own state-change time), when its webhook went out (the delivery
log), what ended it (the record's `ended_by`), when the event was received from the bus, and
the `GET /batches/{id}` the function sent for it. The demo and the bench read the same facts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.local_stack.bus_observer import Observed
from infra.openai_emulator import OpenAIEmulator

CANCELLED = "Batch Cancelled"


@dataclass(frozen=True)
class Ending:
    batch_id: str
    changed_at: float | None  # the emulator's change to `cancelled`
    announced_at: float | None  # its `Batch Cancelled` received from the bus
    ended_by: str | None  # the record's: "webhook" when the notice's refresh ended it
    webhook_at: float | None  # the first attempt of its webhook delivery, if one was sent
    webhook_status: int | None  # that delivery's last answer
    gets: int  # GET /batches/{id} the function sent
    gets_after_webhook: int  # of them, sent once the webhook had gone out

    @property
    def seconds(self) -> float | None:
        """From `cancelled` in the emulator to `Batch Cancelled` received from the bus."""
        if self.changed_at is None or self.announced_at is None:
            return None
        return self.announced_at - self.changed_at

    @property
    def by_webhook(self) -> bool:
        return self.ended_by == "webhook"

    @property
    def check_gets_after_webhook(self) -> int:
        """Status-check GETs once the webhook was out: all but the notice's own refresh (the
        one GET a webhook-ended batch owes). The goal is 0: a check after the webhook finds
        the record terminal and sends nothing."""
        own = 1 if self.by_webhook else 0
        return max(0, self.gets_after_webhook - own)


def endings(
    emulator: OpenAIEmulator,
    items: Iterable[Mapping[str, Any]],
    observed: Iterable[Observed],
    batch_ids: Iterable[str],
) -> list[Ending]:
    """`items` as DynamoDB returns them (typed: `{"S": ...}`), `observed` the bus observer's."""
    records = {item["batch_id"]["S"]: item for item in items}
    announced: dict[str, float] = {}
    for seen in observed:
        if seen.detail_type == CANCELLED and seen.batch_id is not None:
            announced.setdefault(seen.batch_id, seen.received_at)
    requests = emulator.requests
    prefix = emulator.path_prefix
    result = []
    for batch_id in batch_ids:
        change = emulator.state_change(batch_id)
        deliveries = [
            d for d in emulator.webhooks.deliveries(batch_id) if d["type"] == "batch.cancelled"
        ]
        first = deliveries[0] if deliveries else None
        webhook_at = first["attempts"][0]["started_at"] if first and first["attempts"] else None
        last_status = first["attempts"][-1]["status"] if first and first["attempts"] else None
        path = f"{prefix}/batches/{batch_id}"
        get_times = [r.at for r in requests if r.method == "GET" and r.path == path]
        ended_by = records.get(batch_id, {}).get("ended_by", {}).get("S")
        result.append(
            Ending(
                batch_id=batch_id,
                changed_at=change[1] if change is not None and change[0] == "cancelled" else None,
                announced_at=announced.get(batch_id),
                ended_by=ended_by,
                webhook_at=webhook_at,
                webhook_status=last_status,
                gets=len(get_times),
                gets_after_webhook=(
                    0 if webhook_at is None else sum(at >= webhook_at for at in get_times)
                ),
            )
        )
    return result


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2): no interpolation between runs."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))  # round: 0.95 * 40 is 38, not 38.0000001
    return ordered[min(len(ordered), max(1, rank)) - 1]

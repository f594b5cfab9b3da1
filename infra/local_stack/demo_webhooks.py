"""The demo's webhook story: which cancellations a webhook ended (the record's `ended_by`), how
long from the emulator's `cancelled` to `Batch Cancelled` on the bus, and that no status check
sent a GET for them once their webhook was out (the emulator's request log)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from infra.local_stack.announce_timing import Ending, percentile

Say = Callable[[str], None]


def report_webhooks(endings: Sequence[Ending], say: Say) -> list[str]:
    """Print the story; return what is wrong with it (the demo's verdict adds it)."""
    cancelled = [e for e in endings if e.changed_at is not None]
    by_webhook = [e for e in cancelled if e.by_webhook and e.seconds is not None]
    if not by_webhook:
        say(f"ended by a webhook: 0 of {len(cancelled)} cancellations")
        return ["no cancellation was ended by a webhook (record `ended_by`)"]
    seconds = [e.seconds for e in by_webhook if e.seconds is not None]
    checks = sum(e.check_gets_after_webhook for e in by_webhook)
    say(
        f"ended by a webhook: {len(by_webhook)} of {len(cancelled)} cancellations (the"
        f" record's ended_by); emulator `cancelled` to `Batch Cancelled` on the bus:"
        f" median {percentile(seconds, 0.5):.2f} s, slowest {max(seconds):.2f} s;"
        f" status-check GETs for them: {checks}"
    )
    example = min(by_webhook, key=lambda e: e.batch_id)
    say(
        f"e.g. {example.batch_id}: `cancelled` in the emulator at {_clock(example.changed_at)},"
        f" webhook sent at {_clock(example.webhook_at)} (answered {example.webhook_status}),"
        f" `Batch Cancelled` on the bus at {_clock(example.announced_at)}:"
        f" {example.seconds:.2f} s, announced by the webhook; GET /batches/{{id}} for it:"
        f" {example.gets} in all, {example.check_gets_after_webhook} of them by a status check"
    )
    return [
        f"{e.batch_id}: {e.check_gets_after_webhook} status-check GETs after its webhook"
        for e in by_webhook
        if e.check_gets_after_webhook
    ]


def _clock(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]

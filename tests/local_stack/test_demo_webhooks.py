"""The demo's webhook verdict: it fails the demo when no webhook ended a cancellation, or when a
status check still sent a GET for a batch after its webhook (the facts come from the emulator,
the records and the bus in `make demo`; here they are given, to reach the failing cases)."""

from __future__ import annotations

from dataclasses import replace

from infra.local_stack.announce_timing import Ending, percentile
from infra.local_stack.demo_webhooks import report_webhooks

ENDED = Ending(
    batch_id="batch_a",
    changed_at=100.0,
    announced_at=100.4,
    ended_by="webhook",
    webhook_at=100.01,
    webhook_status=200,
    gets=1,
    gets_after_webhook=1,
)


def _report(*endings: Ending) -> tuple[list[str], list[str]]:
    said: list[str] = []
    return report_webhooks(endings, said.append), said


def test_a_webhook_ended_cancellation_with_only_its_refresh_is_clean() -> None:
    problems, said = _report(ENDED, replace(ENDED, batch_id="batch_b", announced_at=101.0))
    assert problems == []
    assert "ended by a webhook: 2 of 2 cancellations" in said[0]
    assert "status-check GETs for them: 0" in said[0]
    assert "e.g. batch_a:" in said[1]
    assert "0.40 s, announced by the webhook" in said[1]


def test_no_cancellation_ended_by_a_webhook_fails_the_demo() -> None:
    polled = replace(ENDED, ended_by=None, webhook_at=None, gets=3, gets_after_webhook=0)
    problems, said = _report(polled)
    assert problems == ["no cancellation was ended by a webhook (record `ended_by`)"]
    assert said == ["ended by a webhook: 0 of 1 cancellations"]


def test_a_status_check_get_after_the_webhook_fails_the_demo() -> None:
    problems, said = _report(replace(ENDED, gets=2, gets_after_webhook=2))
    assert problems == ["batch_a: 1 status-check GETs after its webhook"]
    assert "status-check GETs for them: 1" in said[0]


def test_a_check_that_ended_the_batch_before_the_webhook_is_no_webhook_ending() -> None:
    # The check's write won: the notice found the record terminal, so no GET of its own.
    by_check = replace(ENDED, ended_by=None, gets=4, gets_after_webhook=0)
    assert by_check.check_gets_after_webhook == 0
    problems, said = _report(ENDED, by_check)
    assert problems == []
    assert "1 of 2 cancellations" in said[0]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 41)], 0.95) == 38.0
    assert percentile([7.0], 0.95) == 7.0

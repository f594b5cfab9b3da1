"""What a webhook notice does, decided from the record alone (`classify_notice`)."""

from __future__ import annotations

from batch_canceller.records import BatchRecord
from batch_canceller.webhook_notice import NoticeStep, WebhookNotice, classify_notice

NOTICE = WebhookNotice("batch_a", "msg_1", "evt_1", "batch.cancelled", 1733000000)


def record(status: str | None, *events: str) -> BatchRecord:
    return BatchRecord("batch_a", status, None, None, webhook_events=frozenset(events))


def test_no_record_is_an_unknown_batch() -> None:
    assert classify_notice(None, NOTICE) is NoticeStep.UNKNOWN


def test_a_terminal_record_is_known_whatever_the_notice_says() -> None:
    for status in ("cancelled", "completed", "failed", "expired"):
        assert classify_notice(record(status), NOTICE) is NoticeStep.KNOWN


def test_a_record_short_of_terminal_is_refreshed() -> None:
    for status in ("validating", "in_progress", "finalizing", "cancelling"):
        assert classify_notice(record(status), NOTICE) is NoticeStep.REFRESH
    # A cancel that failed stored its error, not a status: the notice refreshes it.
    failed = BatchRecord("batch_a", None, None, "2026-12-01T00:00:00.000Z")
    assert classify_notice(failed, NOTICE) is NoticeStep.REFRESH


def test_a_schedule_note_alone_is_an_unknown_batch() -> None:
    # Only a waiting cancel_at schedule's note: no cancel sent; the schedule announces later.
    note = BatchRecord("batch_a", None, None, None, cancel_schedule="cancel-batch_a")
    assert classify_notice(note, NOTICE) is NoticeStep.UNKNOWN


def test_an_event_already_handled_is_known_even_short_of_terminal() -> None:
    assert classify_notice(record("cancelling", "evt_1"), NOTICE) is NoticeStep.KNOWN
    assert classify_notice(record("cancelling", "evt_0"), NOTICE) is NoticeStep.REFRESH

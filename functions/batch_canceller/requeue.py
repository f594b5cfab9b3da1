"""Unfinished work as queue messages: what an event or a direct invoke could not finish, and
the part of an SQS message no work phase started, goes back to the queue to be retried there."""

from __future__ import annotations

from collections.abc import Sequence

from batch_canceller.commands import MAX_BATCH_IDS, InternalWork
from batch_canceller.queue import OutgoingMessage, command_messages, whole_seconds
from batch_canceller.work import WorkResult

# SQS delays a message by at most this much; a longer wait comes back early and waits again.
MAX_DELAY_SECONDS = 900


def requeue_messages(unfinished: Sequence[WorkResult]) -> list[OutgoingMessage]:
    """One message per status check or webhook notice; cancels grouped by reason, requester and delay, at most
    MAX_BATCH_IDS a message. Work that must wait (another delivery's claim) is delayed until
    the wait is over."""
    messages: list[OutgoingMessage] = []
    commands: dict[tuple[str | None, str | None, int], list[str]] = {}
    for result in unfinished:
        work, delay = result.work, delay_seconds(result.retry_after)
        if isinstance(work, InternalWork):
            messages.append(OutgoingMessage(work.to_message(), delay))
        else:
            commands.setdefault((work.reason, work.requested_by, delay), []).append(work.batch_id)
    for (reason, requested_by, delay), ids in commands.items():
        for message in command_messages(ids, reason, requested_by, MAX_BATCH_IDS):
            messages.append(OutgoingMessage(message.body, delay))
    return messages


def delay_seconds(retry_after: float | None) -> int:
    return whole_seconds(retry_after, MAX_DELAY_SECONDS)

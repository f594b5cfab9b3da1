"""Every DynamoDB and SQS call the function makes ends before the invocation's deadline.

The SDK bounds a call only by its own settings (attempts x (connect + read timeout) + pauses),
so a stalled table or queue would hold an invocation past its deadline wherever a call is
made: confirming receipts, claims and marks, requeues, postpones, DLQ sends. Instead of a
check at each call site, two hooks on the clients refuse, at the last moment, what the
deadline has no room for:
- `before-send`: an attempt starts only if it can time out (connect + read) and still leave
  time to answer Lambda. A refused attempt raises `OutOfAwsTime`, a BotoCoreError that is not
  a connection or HTTP error, so standard retries surface it instead of retrying it, and every
  call site takes it as the failed call it is (nothing was sent: a timeout before sending).
- `needs-retry` (first in line): no retry when its pause and its attempt would not fit; the
  call then fails with the error of its last attempt, as it would after its last retry.

The deadline is the invocation's, held in a context variable that `Application.handle` sets:
deliveries running concurrently in one process (tests, the model) each see their own, also on
a shared Application, and `carrying_deadline` hands it to the pool threads that run their work.
Outside an invocation (scripts, tests calling a store) nothing is refused.

EventBridge and Scheduler calls are not hooked: they make one attempt each, bounded by their
own timeouts and checked against the deadline before they start (announcer, schedule_writer).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError

from batch_canceller.concurrency import MapFn
from batch_canceller.deadline import Deadline

# What answering Lambda takes once the last attempt has given up (later calls are refused at once).
ANSWER_SECONDS = 0.5
# The longest pause standard retries take before attempt n + 1 (a throttled call: 1 s x 2^(n-1),
# at most 20 s; botocore.retries.standard.ExponentialBackoff); other errors pause far less.
MAX_PAUSE_SECONDS = 20.0

_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "aws_deadline", default=None
)
T = TypeVar("T")


class OutOfAwsTime(BotoCoreError):
    """An AWS call not started: the invocation's deadline leaves no time for an attempt."""

    fmt = "{operation} not sent: {remaining:.1f} s left of the invocation"


@contextmanager
def invocation_deadline(deadline: Deadline) -> Iterator[None]:
    """AWS calls made in this context (and in pool work it hands on) end before `deadline`."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def carrying_deadline(map_fn: MapFn) -> MapFn:
    """`map_fn` (an executor's map) with each item run under the caller's deadline: a pool
    thread does not inherit the context of the thread that submits to it."""

    def mapped(fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterable[Any]:
        # One copy per item: a Context cannot be entered by two threads at once.
        context = contextvars.copy_context()
        return map_fn(lambda *args: context.copy().run(fn, *args), *iterables)

    return mapped


def bound_by_deadline(client: Any) -> Any:
    """Registers the hooks on a boto3 client; its attempts take at most connect + read."""
    config = client.meta.config
    attempt_seconds = float(config.connect_timeout) + float(config.read_timeout)
    events, service = client.meta.events, client.meta.service_model.service_id.hyphenize()
    events.register(f"before-send.{service}", partial(_refuse_late_attempt, attempt_seconds))
    # On the retry policy's own event name, ahead of it: the first answer decides.
    events.register_first(f"needs-retry.{service}", partial(_stop_late_retry, attempt_seconds))
    return client


def _refuse_late_attempt(attempt_seconds: float, event_name: str = "", **_: Any) -> None:
    deadline = _deadline.get()
    if deadline is not None and not deadline.leaves(attempt_seconds + ANSWER_SECONDS):
        operation = event_name.removeprefix("before-send.")
        raise OutOfAwsTime(operation=operation, remaining=deadline.remaining_seconds())


def _stop_late_retry(attempt_seconds: float, attempts: int, **_: Any) -> bool | None:
    """False (no retry) when the longest pause before another attempt, and the attempt, would
    not fit; None leaves the decision to the retry policy."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    pause = min(MAX_PAUSE_SECONDS, 2.0 ** (attempts - 1))
    if deadline.leaves(pause + attempt_seconds + ANSWER_SECONDS):
        return None
    return False

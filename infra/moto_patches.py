"""moto as the tests need it: DynamoDB writes atomic, as on AWS, the per-request costs
that would dominate a long run removed, and SQS's StartMessageMoveTask (the README's DLQ
redrive), which moto lacks. `prepare_moto()` applies them in this process.

moto evaluates a ConditionExpression and then applies the update as separate Python steps, and
its server handles requests on many threads, so two concurrent conditional writes to one item
can both pass their conditions. DynamoDB never allows that, and the function's exactly-once
claims rely on it; without this, tests of racing invocations fail on moto's race, not ours.
One lock around every write (reads stay concurrent) restores the guarantee.
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from typing import Any

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def make_dynamodb_writes_atomic() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    backend: Any = DynamoDBBackend
    for name in _WRITES:
        original = getattr(backend, name)
        if getattr(original, "_atomic", False):
            continue

        @functools.wraps(original)
        def atomic(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _lock:
                return __original(*args, **kwargs)

        atomic._atomic = True  # type: ignore[attr-defined]
        setattr(backend, name, atomic)


def speed_up_moto() -> None:
    """Per-request costs of moto's server that would dominate a long run. Each replacement
    returns exactly what the original does, so they change nothing but speed (idempotent)."""
    import jsonpath_ng.ext
    import moto.backends
    import moto.sqs.models

    # Patched modules, typed loosely: these are their internals, not their interfaces.
    jsonpath: Any = jsonpath_ng.ext
    backends: Any = moto.backends
    sqs_models: Any = moto.sqs.models
    if getattr(sqs_models.unix_time, "_fast", False):
        return
    # A JSONPath parser (yacc tables) is built for every path of every event delivered to a
    # target: ~40 ms per event.
    jsonpath.parse = functools.lru_cache(maxsize=256)(jsonpath.parse)
    # Every request lists moto's package directory and stats each entry to route itself.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    # SQS scans the whole queue (twice per message) on every send and receive, asking the
    # clock for each message through datetime arithmetic; the plain clock is ~10x cheaper.
    slow_seconds = sqs_models.unix_time

    def unix_time(dt: datetime.datetime | None = None) -> float:
        return time.time() if dt is None else float(slow_seconds(dt))

    def unix_time_millis(dt: datetime.datetime | None = None) -> float:
        return unix_time(dt) * 1000.0

    unix_time._fast = True  # type: ignore[attr-defined]
    sqs_models.unix_time = unix_time
    sqs_models.unix_time_millis = unix_time_millis


def add_message_move_task() -> None:
    """SQS StartMessageMoveTask, as a DLQ redrive uses it: every available message of the
    source queue (an ARN) moves to the destination (an ARN) with its body and attributes, at
    once (AWS moves them over time; the task's progress is not emulated). Idempotent."""
    from moto.core.responses import ActionResult
    from moto.sqs.exceptions import QueueDoesNotExist
    from moto.sqs.responses import SQSResponse

    if hasattr(SQSResponse, "start_message_move_task"):
        return

    def start_message_move_task(self: Any) -> Any:
        backend = self.sqs_backend
        by_arn = {queue.queue_arn: queue for queue in backend.queues.values()}
        source = by_arn.get(self._get_param("SourceArn"))
        destination = by_arn.get(self._get_param("DestinationArn"))
        if source is None or destination is None:
            raise QueueDoesNotExist()
        with source._messages_lock:
            moving = source.messages
            source._messages = [m for m in source._messages if m not in moving]
        for message in moving:
            backend.send_message(
                destination.name, message.body, message_attributes=message.message_attributes
            )
        return ActionResult({"TaskHandle": f"moto-move-{source.name}-{len(moving)}"})

    SQSResponse.start_message_move_task = start_message_move_task  # type: ignore[attr-defined]


def prepare_moto() -> None:
    make_dynamodb_writes_atomic()
    speed_up_moto()
    add_message_move_task()

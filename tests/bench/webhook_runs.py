"""One run of the webhook bench: N batches cancelled through the local stack (template.yaml on
moto, the canceller behind the emulated SQS event source, the receiver behind the emulated
function URL, the OpenAI emulator), with webhooks on or polling only, the template's default
delays and a realistic cancel duration divided by the same factor. It measures each batch from
the emulator's `cancelled` to `Batch Cancelled` received from the bus, and counts the calls."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from infra.local_stack.announce_timing import Ending, endings
from infra.local_stack.bus_observer import BusObserver
from infra.local_stack.stack import LocalStack
from infra.local_stack.url_functions import UrlFunction
from infra.sam.template import load_template
from tests.bench.aws import CallLog, EndpointSession, queue_depth, scan_items
from tests.bench.servers import BENCH_DIR
from tests.bench.sizes import Sizes

# The template parameters the bench scales, read from template.yaml (their defaults).
SCALED = ("PollInitialDelaySeconds", "PollMaxDelaySeconds", "WebhookFirstCheckDelaySeconds")
TALLIED = ("CancelRequests", "StatusChecks", "StatusChecksSuperseded", "WebhookNotices")


@dataclass
class ModeRun:
    webhooks: bool
    parameters: dict[str, str]
    cancel_seconds: list[float]
    endings: list[Ending] = field(default_factory=list)
    openai_calls: Counter[str] = field(default_factory=Counter)
    canceller_calls: Counter[str] = field(default_factory=Counter)
    receiver_calls: Counter[str] = field(default_factory=Counter)
    tally: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    messages: int = 0
    wall_seconds: float = 0.0

    @property
    def label(self) -> str:
        return "webhooks" if self.webhooks else "polling only"


def template_defaults() -> dict[str, int]:
    parameters = load_template()["Parameters"]
    return {name: int(parameters[name]["Default"]) for name in SCALED}


def scaled_parameters(divisor: int) -> dict[str, str]:
    """The template's defaults divided by `divisor`, in whole seconds (SQS delays are), at
    least 1 so that no check becomes immediate."""
    return {
        name: str(max(1, round(value / divisor))) for name, value in template_defaults().items()
    }


def cancel_durations(sizes: Sizes) -> list[float]:
    """Evenly spread over the range, in seconds after scaling."""
    low, high = (
        minutes * 60 / sizes.webhook_scale_divisor for minutes in sizes.webhook_cancel_minutes
    )
    n = sizes.webhook_ids
    return [low + (high - low) * i / max(1, n - 1) for i in range(n)]


def run_mode(webhooks: bool, sizes: Sizes) -> ModeRun:
    run = ModeRun(webhooks, scaled_parameters(sizes.webhook_scale_divisor), cancel_durations(sizes))
    canceller_log, receiver_log = CallLog(), CallLog()
    stack = LocalStack(
        webhooks=webhooks,
        parameter_overrides=dict(run.parameters),
        url_handler=lambda function: _receiver(function, stack, receiver_log),
    )
    # The canceller's own AWS calls, counted by botocore hooks on its session's clients.
    stack.session = _LateSession(stack, canceller_log)
    with _functions_to_log(), stack:
        _check_mode(stack, webhooks)
        ids = [stack.openai.seed(cancel_delay_seconds=d)["id"] for d in run.cancel_seconds]
        with BusObserver(stack.client("sqs"), stack.observer_queue_url) as observer:
            started = time.perf_counter()
            _send(stack, ids, sizes.webhook_ids_per_message)
            _wait(stack, observer, ids, sizes.webhook_timeout_seconds)
            run.wall_seconds = time.perf_counter() - started
        items = scan_items(stack.client("dynamodb"), stack.outputs["BatchesTableName"])
        _verify(stack, items, observer, ids)
        run.endings = endings(stack.openai, items, observer.observed(), ids)
        run.openai_calls = _openai_calls(stack)
        run.canceller_calls = Counter(call.operation for call in canceller_log.snapshot())
        run.receiver_calls = Counter(call.operation for call in receiver_log.snapshot())
        counts = stack.application.tally.counts
        run.tally = Counter({name: counts[name] for name in TALLIED})
        run.invocations, run.messages = stack.invocations, stack.messages_handled
        # moto's state is the process's: the next stack provisions the same names afresh.
        urllib.request.urlopen(
            urllib.request.Request(f"{stack.aws_endpoint}/moto-api/reset", method="POST")
        ).close()
    _forget_receiver()
    return run


@contextlib.contextmanager
def _functions_to_log() -> Iterator[None]:
    """The functions' JSON logs and the receiver's EMF documents (stdout, as on Lambda) go to
    .bench/webhooks-functions.log: the bench prints tables. Nothing else prints meanwhile."""
    BENCH_DIR.mkdir(exist_ok=True)
    handlers = [
        h
        for h in logging.getLogger("batch-canceller").handlers
        if isinstance(h, logging.StreamHandler)
    ]
    with (BENCH_DIR / "webhooks-functions.log").open("a") as log:
        streams = [h.setStream(log) for h in handlers]
        try:
            with contextlib.redirect_stdout(log):
                yield
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                if stream is not None:
                    handler.setStream(stream)


class _LateSession:
    """A boto3 session for the canceller whose clients talk to the stack's moto (its endpoint
    is known only once the stack starts) and log every call."""

    def __init__(self, stack: LocalStack, log: CallLog) -> None:
        self._stack, self._log = stack, log

    def client(self, service: Any, **kwargs: Any) -> Any:
        return EndpointSession(self._stack.aws_endpoint, self._log).client(service, **kwargs)


def _receiver(function: UrlFunction, stack: LocalStack, log: CallLog) -> Any:
    """The template's receiver handler, its intake built on a call-counting session (and
    fresh: a previous stack's intake would send to that stack's queue)."""
    from batch_canceller import webhook_handler

    session: Any = EndpointSession(stack.aws_endpoint, log)
    webhook_handler._intake = webhook_handler.build_intake(function.environment, session)
    return webhook_handler.lambda_handler


def _forget_receiver() -> None:
    from batch_canceller import webhook_handler

    webhook_handler._intake = None


def _check_mode(stack: LocalStack, webhooks: bool) -> None:
    enabled = stack.provisioned.function_environment.get("WEBHOOKS_ENABLED") == "true"
    if enabled != webhooks or (stack.webhook_url is not None) != webhooks:
        raise RuntimeError(f"the stack has WEBHOOKS_ENABLED={enabled}, wanted {webhooks}")


def _send(stack: LocalStack, ids: list[str], per_message: int) -> None:
    sqs = stack.client("sqs")
    queue = stack.outputs["CancelQueueUrl"]
    bodies = [
        json.dumps({"batch_ids": ids[i : i + per_message], "reason": "bench"})
        for i in range(0, len(ids), per_message)
    ]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )


def _wait(stack: LocalStack, observer: BusObserver, ids: list[str], timeout: float) -> None:
    """Until every batch is announced and the queue is empty, delayed checks included: the
    status checks still pending after a webhook cost calls too."""
    sqs, queue = stack.client("sqs"), stack.outputs["CancelQueueUrl"]
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        announced = {o.batch_id for o in observer.observed() if o.detail_type == "Batch Cancelled"}
        if wanted <= announced and queue_depth(sqs, queue) == 0:
            time.sleep(1.5)  # a receipt or an event in flight between two looks
            if queue_depth(sqs, queue) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(f"not every batch was announced and settled within {timeout:.0f} s")


def _verify(
    stack: LocalStack, items: list[dict[str, Any]], observer: BusObserver, ids: list[str]
) -> None:
    wanted = set(ids)
    statuses = Counter(i["status"]["S"] for i in items if i["batch_id"]["S"] in wanted)
    events = Counter(o.batch_id for o in observer.observed() if o.detail_type == "Batch Cancelled")
    problems = []
    if statuses.get("cancelled", 0) != len(ids):
        problems.append(f"statuses {dict(statuses)} for {len(ids)} IDs")
    if any(events[i] != 1 for i in ids):
        problems.append(f"Batch Cancelled counts {sorted({events[i] for i in ids})}, not 1 each")
    dead = queue_depth(stack.client("sqs"), stack.outputs["DeadLetterQueueUrl"])
    if dead or stack.handler_errors:
        problems.append(f"{dead} messages on the DLQ, {stack.handler_errors} handler errors")
    if problems:
        raise RuntimeError("the webhook bench did not finish cleanly: " + "; ".join(problems))


def _openai_calls(stack: LocalStack) -> Counter[str]:
    """The emulator's request log by kind: `POST cancel`, `GET batch` (status checks and
    webhook refreshes), anything else by method and path."""
    calls: Counter[str] = Counter()
    batches = stack.openai.path_prefix + "/batches/"
    for request in stack.openai.requests:
        rest = request.path.removeprefix(batches)
        if request.method == "POST" and rest.endswith("/cancel"):
            calls["POST cancel"] += 1
        elif request.method == "GET" and rest != request.path and "/" not in rest:
            calls["GET batch"] += 1
        else:
            calls[f"{request.method} {request.path}"] += 1
    return calls

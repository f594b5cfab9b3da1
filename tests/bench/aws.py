"""The AWS side of the bench: resources on moto, sessions pointed at an endpoint, and the
function wrapped the way Lambda runs it (Powertools decorators, metrics flushed per call)."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from tests.support import create_resources

REGION = "us-east-1"

Handler = Callable[[dict[str, Any], Any], Any]


def prepare_environment() -> None:
    """Before the function's modules are imported: fake credentials, quiet logs."""
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_SERVICE_NAME": "batch-canceller",
            "POWERTOOLS_METRICS_NAMESPACE": "BatchCancellerBench",
        }
    )
    # The function logs a line or two per invocation at INFO; the tables are the output here.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def client(service: Any, endpoint: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(service, endpoint_url=endpoint)


@dataclass(frozen=True)
class AwsCall:
    operation: str  # "DynamoDB.UpdateItem", as the fault proxy names it
    started: float  # time.perf_counter()
    ended: float


@dataclass
class CallLog:
    """Every AWS call a session's clients made, timed (botocore's before/after-call events)."""

    calls: list[AwsCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, boto_client: Any) -> None:
        # Named as the fault proxy names them: "DynamoDB", "SQS", "Events", "SecretsManager".
        service_id = boto_client.meta.service_model.service_id.replace(" ", "")
        service = {"EventBridge": "Events"}.get(service_id, service_id)
        started = threading.local()

        def before(**_: Any) -> None:
            started.at = time.perf_counter()

        def after(model: Any, **_: Any) -> None:
            call = AwsCall(f"{service}.{model.name}", started.at, time.perf_counter())
            with self._lock:
                self.calls.append(call)

        boto_client.meta.events.register("before-call.*.*", before)
        boto_client.meta.events.register("after-call.*.*", after)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> list[AwsCall]:
        with self._lock:
            return list(self.calls)


class EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (moto, or a proxy in front);
    with a `log`, every call they make is timed into it."""

    def __init__(self, endpoint: str, log: CallLog | None = None) -> None:
        self._session = boto3.session.Session(region_name=REGION)
        self.endpoint = endpoint
        self.region_name = REGION
        self._log = log

    def client(self, service: Any, **kwargs: Any) -> Any:
        made = self._session.client(service, endpoint_url=self.endpoint, **kwargs)
        if self._log is not None:
            self._log.attach(made)
        return made


@dataclass(frozen=True)
class BenchStack:
    """The function's resources on moto: table, queue with its DLQ, bus (no rules), secret."""

    endpoint: str
    table_name: str
    queue_url: str
    dlq_url: str
    bus_name: str
    secret_id: str

    def env(self, base_url: str, **overrides: str) -> dict[str, str]:
        """The function's environment (as template.yaml sets it) for this stack."""
        env = {
            "BATCHES_TABLE_NAME": self.table_name,
            "EVENT_BUS_NAME": self.bus_name,
            "CANCEL_QUEUE_URL": self.queue_url,
            "DEAD_LETTER_QUEUE_URL": self.dlq_url,
            "OPENAI_API_KEY_SECRET_ID": self.secret_id,
            "OPENAI_BASE_URL": base_url,
            "EVENT_SOURCE": "batch-canceller",
            "MAX_IN_FLIGHT": "32",
        }
        env.update(overrides)
        return env

    def settings(self, base_url: str, **overrides: str) -> Any:
        from batch_canceller.config import Settings

        return Settings.from_env(self.env(base_url, **overrides))


def create_stack(endpoint: str, api_key: str, visibility_timeout: int = 120) -> BenchStack:
    """Fresh, uniquely named resources, with the template's receipts rule on the bus (the
    function's own events back to its queue, as deployed); no capture rule, whose extra
    deliveries would weigh on what the bench measures."""
    made = create_resources(
        endpoint, api_key, visibility_timeout=visibility_timeout, capture=False, prefix="bench-"
    )
    return BenchStack(endpoint, *made.names)


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event as Lambda delivers it, one record per body."""
    return {
        "Records": [
            {
                "messageId": f"bench-{index}-{uuid.uuid4().hex[:8]}",
                "receiptHandle": f"bench-handle-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-cancel",
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies)
        ]
    }


def lambda_style(application: Any, counts: Counter[str] | None = None) -> Handler:
    """`batch_canceller.handler.lambda_handler` around an application built here: the same
    decorators and per-invocation metrics flush; the EMF output is discarded, not printed.
    `counts` receives the function's own tally (cancels, checks, events) before each flush."""
    from batch_canceller.observability import logger, metrics

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> Any:
        try:
            return application.handle(event, context)
        finally:
            if counts is not None:
                counts.update(application.tally.counts)
            application.tally.flush(metrics)

    def quiet(event: dict[str, Any], context: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "No application metrics to publish"
            return handler(event, context)

    return quiet


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages on the queue: visible, in flight and delayed."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def scan_items(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every item, in DynamoDB's typed form (`{"S": ...}`), which item sizes are computed on."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

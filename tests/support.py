"""Test helpers: resources on moto, building the function, and reading what it produced."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3

from batch_canceller.app import Application
from batch_canceller.config import Settings
from batch_canceller.service import build_application
from batch_canceller.store import BatchStore
from infra.local_stack.lambda_context import LocalLambdaContext
from infra.local_stack.sqs_event_source import SqsEventSource

# The detail of a batch outcome event (README, Events).
OUTCOME_DETAIL_KEYS = {"batch_id", "status", "batch", "reason", "requested_by", "publication_id"}
API_KEY = "sk-test-" + "k3y" * 12  # long and distinctive, so the secret scan cannot miss it
ROTATED_API_KEY = "sk-rotated-" + "r0t" * 12
# The webhook signing secrets (`whsec_` + base64 of a distinctive key), for the receiver.
WEBHOOK_KEY = b"wh-s1gn1ng-k3y-" * 3
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()
ROTATED_WEBHOOK_KEY = b"wh-r0tat3d-k3y-" * 3
ROTATED_WEBHOOK_SECRET = "whsec_" + base64.b64encode(ROTATED_WEBHOOK_KEY).decode()
# Every key the tests use: none may ever show up in logs, records, events or errors.
SECRETS = (
    API_KEY,
    ROTATED_API_KEY,
    WEBHOOK_SECRET,
    ROTATED_WEBHOOK_SECRET,
    WEBHOOK_KEY.decode(),
    ROTATED_WEBHOOK_KEY.decode(),
)
REGION = "us-east-1"
EVENT_SOURCE = "batch-canceller"  # the function's default `Source`, which the capture rule keeps


def client(service: str, endpoint: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(service, endpoint_url=endpoint)


@dataclass
class Stack:
    endpoint: str
    table_name: str
    queue_url: str
    dlq_url: str
    bus_name: str
    secret_id: str
    capture_queue_url: str
    seen_events: list[dict[str, Any]] = field(default_factory=list)

    def settings(self, base_url: str, **overrides: str) -> Settings:
        env = {
            "BATCHES_TABLE_NAME": self.table_name,
            "EVENT_BUS_NAME": self.bus_name,
            "CANCEL_QUEUE_URL": self.queue_url,
            "CANCEL_QUEUE_ARN": self.queue_arn(),
            "DEAD_LETTER_QUEUE_URL": self.dlq_url,
            "OPENAI_API_KEY_SECRET_ID": self.secret_id,
            "OPENAI_BASE_URL": base_url,
            "POLL_INITIAL_DELAY_SECONDS": "1",
            "POLL_MAX_DELAY_SECONDS": "2",
            "MAX_IN_FLIGHT": "8",
        }
        env.update(overrides)
        return Settings.from_env(env)

    def queue_arn(self) -> str:
        """The queue's ARN as SQS reports it (as CloudFormation's !GetAtt would pass it)."""
        attributes = client("sqs", self.endpoint).get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]
        return str(attributes["QueueArn"])

    def app(
        self,
        base_url: str,
        aws_endpoint: str | None = None,
        *,
        session: Any = None,
        clock: Callable[[], datetime] | None = None,
        **overrides: str,
    ) -> Application:
        """The function, as Lambda would build it; `aws_endpoint` routes it through a proxy,
        `session` replaces its boto3 session, `clock` its wall clock (to be later in time)."""
        if session is None:
            session = boto3.session.Session(region_name=REGION)
            if aws_endpoint is not None:
                session = _EndpointSession(aws_endpoint)
        settings = self.settings(base_url, **overrides)
        if clock is None:
            return build_application(settings, session=session)
        return build_application(settings, session=session, clock=clock)

    # -- reading what the function produced ------------------------------------------------

    def store(self) -> BatchStore:
        """The record's writes on this stack's table, e.g. to set up a record by hand."""
        return BatchStore(client("dynamodb", self.endpoint), self.table_name)

    def item(self, batch_id: str) -> dict[str, Any] | None:
        table = boto3.resource("dynamodb", region_name=REGION, endpoint_url=self.endpoint).Table(
            self.table_name
        )
        return table.get_item(Key={"batch_id": batch_id}, ConsistentRead=True).get("Item")

    def items(self) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb", region_name=REGION, endpoint_url=self.endpoint).Table(
            self.table_name
        )
        return table.scan(ConsistentRead=True)["Items"]

    def events(self) -> list[dict[str, Any]]:
        """Every event the bus delivered so far (kept across calls)."""
        sqs = client("sqs", self.endpoint)
        while True:
            answer = sqs.receive_message(
                QueueUrl=self.capture_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return self.seen_events
            for message in messages:
                self.seen_events.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.capture_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def events_of(self, detail_type: str, batch_id: str | None = None) -> list[dict[str, Any]]:
        return [
            event
            for event in self.events()
            if event["detail-type"] == detail_type
            and (batch_id is None or event["detail"].get("batch_id") == batch_id)
        ]

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = client("sqs", self.endpoint)
        found = []
        while True:
            answer = sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=300,
            )
            messages = answer.get("Messages", [])
            if not messages:
                return found
            found.extend(messages)

    def queued_bodies(self, receipts: bool = False) -> list[dict[str, Any]]:
        """Bodies of commands and checks waiting on the cancel queue; with `receipts`, only
        the receipts (the bus's copies of the function's own events) instead."""
        sqs = client("sqs", self.endpoint)
        answer = sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        bodies = [json.loads(m["Body"]) for m in answer.get("Messages", [])]
        return [body for body in bodies if is_receipt(body) == receipts]

    def queue_depth(self) -> int:
        """Messages on the cancel queue: visible, delayed and in flight."""
        attributes = client("sqs", self.endpoint).get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesDelayed",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def drain_queue(self) -> list[dict[str, Any]]:
        """Take every message off the cancel queue and return the bodies of the commands and
        checks (receipts are dropped), e.g. to see what a sweep sent."""
        return [body for body in self._drain() if not is_receipt(body)]

    def drain_receipts(self) -> list[dict[str, Any]]:
        """Take every message off the cancel queue and return the receipts among them."""
        return [body for body in self._drain() if is_receipt(body)]

    def _drain(self) -> list[dict[str, Any]]:
        """Every body on the cancel queue, parsed; the messages are deleted."""
        sqs = client("sqs", self.endpoint)
        bodies: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def event_source(self, app: Application, **options: Any) -> SqsEventSource:
        return SqsEventSource(client("sqs", self.endpoint), self.queue_url, app.handle, **options)

    def run_until(
        self,
        app: Application,
        done: Callable[[], bool],
        timeout: float = 30.0,
    ) -> None:
        """Feed the cancel queue to the function, as Lambda would, until `done()` holds."""
        source = self.event_source(app)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            source.poll_once(wait_seconds=1)
        raise AssertionError(f"condition not reached within {timeout} s")


class _EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (a fault proxy in front of moto)."""

    def __init__(self, endpoint: str) -> None:
        self._session = boto3.session.Session(region_name=REGION)
        self._endpoint = endpoint
        self.region_name = REGION

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint, **kwargs)


class LocalAws:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def create_stack(
        self, api_key: str = API_KEY, visibility_timeout: int = 2, receipts: bool = True
    ) -> Stack:
        """As template.yaml deploys it; `receipts=False` leaves out the receipts rule."""
        made = create_resources(
            self.endpoint, api_key, visibility_timeout=visibility_timeout, receipts=receipts
        )
        return Stack(self.endpoint, *made.names, made.capture_queue())


@dataclass(frozen=True)
class Resources:
    """What `create_resources` made: names and URLs each caller copies into its own stack."""

    table_name: str
    queue_url: str
    dlq_url: str
    bus_name: str
    secret_id: str
    capture_queue_url: str | None  # None when made without the capture rule

    @property
    def names(self) -> tuple[str, str, str, str, str]:
        """Table, queue URL, DLQ URL, bus, secret: the fields every stack type lists first."""
        return (self.table_name, self.queue_url, self.dlq_url, self.bus_name, self.secret_id)

    def capture_queue(self) -> str:
        """The capture queue's URL, for the stack types that read events back."""
        if self.capture_queue_url is None:
            raise ValueError("made without the capture rule")
        return self.capture_queue_url


def create_resources(
    aws_endpoint: str,
    api_key: str,
    *,
    dynamodb_endpoint: str | None = None,
    visibility_timeout: int,
    max_receive_count: int = 5,
    capture: bool = True,
    receipts: bool = True,
    prefix: str = "",
) -> Resources:
    """The function's resources as template.yaml deploys them, uniquely named, so the
    integration tests, the bench and the chaos run all test the same wiring: the table (on
    `dynamodb_endpoint` when DynamoDB runs apart), the cancel queue redriving to its DLQ, the
    bus, the secret as JSON; `capture` adds a rule and queue that keep every event of the
    function for the test to read, `receipts` the template's receipts rule."""
    suffix = uuid.uuid4().hex[:10]
    table = f"{prefix}batches-{suffix}"
    create_batches_table(client("dynamodb", dynamodb_endpoint or aws_endpoint), table)
    sqs = client("sqs", aws_endpoint)
    dlq_url = sqs.create_queue(QueueName=f"{prefix}cancel-dlq-{suffix}")["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": max_receive_count}
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}cancel-{suffix}",
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    events = client("events", aws_endpoint)
    bus = f"{prefix}bus-{suffix}"
    events.create_event_bus(Name=bus)
    capture_url = None
    if capture:
        capture_url = sqs.create_queue(QueueName=f"{prefix}capture-{suffix}")["QueueUrl"]
        rule = f"{prefix}capture-{suffix}"
        pattern = json.dumps({"source": [EVENT_SOURCE]})
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=pattern)
        target = {"Id": "capture", "Arn": queue_arn(sqs, capture_url)}
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[target])
    if receipts:
        add_receipts_rule(events, bus, queue_arn(sqs, queue_url))
    secret = f"{prefix}openai-key-{suffix}"
    client("secretsmanager", aws_endpoint).create_secret(
        Name=secret, SecretString=json.dumps({"api_key": api_key})
    )
    return Resources(table, queue_url, dlq_url, bus, secret, capture_url)


def create_batches_table(dynamodb: Any, name: str) -> str:
    """A table shaped like template.yaml's BatchesTable: its key and its indexes (the
    reconciler queries the follow-through index)."""
    from infra.sam.template import load_template

    table = load_template()["Resources"]["BatchesTable"]["Properties"]
    dynamodb.create_table(
        TableName=name,
        KeySchema=table["KeySchema"],
        AttributeDefinitions=table["AttributeDefinitions"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def is_receipt(body: object) -> bool:
    """An event the receipts rule delivered to the cancel queue."""
    return isinstance(body, dict) and "detail-type" in body and "source" in body


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def add_receipts_rule(events: Any, bus: str, cancel_queue_arn: str) -> None:
    """The template's PublicationReceiptsRule: the function's own events back to its queue."""
    from infra.sam.template import load_template

    rule = load_template()["Resources"]["PublicationReceiptsRule"]["Properties"]
    name = f"receipts-{bus}"[:64]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(rule["EventPattern"]))
    events.put_targets(
        Rule=name, EventBusName=bus, Targets=[{"Id": "receipts", "Arn": cancel_queue_arn}]
    )


def sqs_event(*bodies: str, ids: list[str] | None = None) -> dict[str, Any]:
    """An SQS event as Lambda delivers it, one record per body."""
    message_ids = ids or [f"msg-{index}-{uuid.uuid4().hex[:6]}" for index in range(len(bodies))]
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "handle-" + message_id,
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:cancel",
                "awsRegion": REGION,
            }
            for message_id, body in zip(message_ids, bodies, strict=True)
        ]
    }


def context(seconds: float = 60.0) -> LocalLambdaContext:
    return LocalLambdaContext(timeout_seconds=seconds)


def failed_ids(answer: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in answer["batchItemFailures"]}


class Crash(BaseException):
    """The process dying: nothing after it runs, not even `except Exception` handlers."""


class DyingSession:
    """A boto3 session whose EventBridge client dies in PutEvents: before sending it
    (`published=False`) or right after the bus accepted it (`published=True`), so the
    function never learns the outcome and never marks the event announced."""

    def __init__(self, published: bool) -> None:
        self._session = boto3.session.Session(region_name=REGION)
        self._published = published
        self.region_name = REGION

    def client(self, service: str, **kwargs: Any) -> Any:
        made = self._session.client(service, **kwargs)
        return _DyingEvents(made, self._published) if service == "events" else made


class _DyingEvents:
    def __init__(self, events: Any, published: bool) -> None:
        self._events = events
        self._published = published

    def put_events(self, **kwargs: Any) -> Any:
        if self._published:
            self._events.put_events(**kwargs)
        raise Crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)


def later(seconds: float) -> Callable[[], datetime]:
    """A wall clock running `seconds` ahead: the function as it runs that much later."""
    from datetime import timedelta

    from batch_canceller.records import utc_now

    return lambda: utc_now() + timedelta(seconds=seconds)

"""FaultProxy against a real moto server over real sockets."""

from __future__ import annotations

import http.client
import json
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from infra.fault_proxy import FaultProxy, Request, Rule, operation_of
from infra.servers import moto_server

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{service}/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc"
)
# botocore's "max_attempts" counts retries, so total_max_attempts=1 is what disables them.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})

ClientFactory = Callable[..., Any]
# Untyped alias: boto3-stubs overloads want a literal service name, these helpers take a str.
new_client: Any = boto3.client


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=moto_url) as running:
        yield running


@pytest.fixture
def client(proxy: FaultProxy, moto_url: str) -> ClientFactory:
    """``client("sqs", config=NO_RETRIES, direct=True)``: direct bypasses the proxy."""

    def make(service: str, config: Config | None = None, *, direct: bool = False) -> Any:
        return new_client(
            service,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            endpoint_url=moto_url if direct else proxy.url,
            config=config,
        )

    return make


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_table(ddb: Any) -> str:
    name = unique("tbl")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def make_queue(sqs: Any) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def drain(sqs: Any, url: str) -> list[Any]:
    bodies: list[Any] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return bodies


def raw_request(url: str, target: str, service: str, body: bytes = b"{}") -> tuple[int, Any, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {
            "X-Amz-Target": target,
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": AUTH.format(service=service),
        }
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


# -- operation naming ---------------------------------------------------------------------


def _req(method: str, path: str, service: str | None, body: bytes = b"", **extra: str) -> Request:
    headers = [(k.replace("_", "-"), v) for k, v in extra.items()]
    if service:
        headers.append(("Authorization", AUTH.format(service=service)))
    return Request(method, path, tuple(headers), body)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_req("POST", "/", "dynamodb", X_Amz_Target="DynamoDB_20120810.UpdateItem"),
         "DynamoDB.UpdateItem"),
        (_req("POST", "/", "events", X_Amz_Target="AWSEvents.PutEvents"), "Events.PutEvents"),
        (_req("POST", "/", "sqs", X_Amz_Target="AmazonSQS.SendMessageBatch"),
         "SQS.SendMessageBatch"),
        (_req("POST", "/", "secretsmanager", X_Amz_Target="secretsmanager.GetSecretValue"),
         "SecretsManager.GetSecretValue"),
        (_req("POST", "/", "ssm", X_Amz_Target="AmazonSSM.GetParameter"), "SSM.GetParameter"),
        (_req("POST", "/", "sqs", b"Action=SendMessage&Version=2012-11-05",
              Content_Type="application/x-www-form-urlencoded; charset=utf-8"),
         "SQS.SendMessage"),
        (_req("GET", "/?Action=ListQueues", "sqs"), "SQS.ListQueues"),
        (_req("POST", "/schedules/my-sched", "scheduler"), "Scheduler.CreateSchedule"),
        (_req("GET", "/schedules/my-sched?groupName=g", "scheduler"), "Scheduler.GetSchedule"),
        (_req("PUT", "/schedules/my-sched", "scheduler"), "Scheduler.UpdateSchedule"),
        (_req("DELETE", "/schedules/my-sched", "scheduler"), "Scheduler.DeleteSchedule"),
        (_req("GET", "/schedules?MaxResults=5", "scheduler"), "Scheduler.ListSchedules"),
        (_req("GET", "/bucket/key", "s3"), "s3.GET /bucket/key"),
        (_req("POST", "/", "kinesis", X_Amz_Target="Kinesis_20131202.PutRecord"),
         "kinesis.PutRecord"),
        (_req("GET", "/health", None), "Unknown.GET /health"),
    ],
)  # fmt: skip
def test_operation_of_names_requests(request_: Request, expected: str) -> None:
    assert operation_of(request_) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "explode"},
        {"probability": 1.5},
        {"fail_fraction": -0.1},
        {"times": -1},
        {"status": 42},
        {"delay_seconds": -1},
    ],
)
def test_rule_rejects_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Rule(operation="X.Y", **kwargs)


# -- pass-through -------------------------------------------------------------------------


def test_dynamodb_passes_through_and_is_counted(proxy: FaultProxy, client: ClientFactory) -> None:
    ddb = client("dynamodb")
    table = make_table(ddb)
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]
    assert item == {"pk": {"S": "a"}, "n": {"N": "1"}}

    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "a"}},
            UpdateExpression="SET n = :new",
            ConditionExpression="n = :expected",
            ExpressionAttributeValues={":new": {"N": "3"}, ":expected": {"N": "2"}},
        )

    calls = proxy.calls
    assert calls["DynamoDB.CreateTable"] == 1
    assert calls["DynamoDB.PutItem"] == 1
    assert calls["DynamoDB.GetItem"] == 1
    assert calls["DynamoDB.UpdateItem"] == 1
    assert not proxy.faults_injected
    proxy.reset_counts()
    assert not proxy.calls


def test_sqs_passes_through(proxy: FaultProxy, client: ClientFactory) -> None:
    sqs = client("sqs")
    url, _ = make_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 0}))
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(n), "MessageBody": json.dumps({"n": n})} for n in (1, 2)],
    )
    assert len(result["Successful"]) == 2
    assert sorted(body["n"] for body in drain(sqs, url)) == [0, 1, 2]
    assert proxy.calls["SQS.SendMessage"] == 1
    assert proxy.calls["SQS.SendMessageBatch"] == 1
    assert proxy.calls["SQS.ReceiveMessage"] >= 2


def test_events_and_scheduler_pass_through(proxy: FaultProxy, client: ClientFactory) -> None:
    events, scheduler = client("events"), client("scheduler")
    bus = unique("bus")
    events.create_event_bus(Name=bus)
    result = events.put_events(
        Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}", "EventBusName": bus}]
    )
    assert result["FailedEntryCount"] == 0
    assert result["Entries"][0]["EventId"]

    name = unique("sched")
    scheduler.create_schedule(
        Name=name,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "RoleArn": "arn:aws:iam::1:role/r"},
    )
    assert scheduler.get_schedule(Name=name)["Name"] == name
    scheduler.delete_schedule(Name=name)

    calls = proxy.calls
    assert calls["Events.CreateEventBus"] == calls["Events.PutEvents"] == 1
    assert calls["Scheduler.CreateSchedule"] == calls["Scheduler.GetSchedule"] == 1
    assert calls["Scheduler.DeleteSchedule"] == 1


def test_keep_alive_connection_serves_several_requests(proxy: FaultProxy) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": AUTH.format(service="dynamodb"),
    }
    try:
        for _ in range(3):
            conn.request("POST", "/", body=b"{}", headers=headers)
            response = conn.getresponse()
            assert response.status == 200
            assert "TableNames" in json.loads(response.read())
            assert not response.will_close
    finally:
        conn.close()
    assert proxy.calls["DynamoDB.ListTables"] == 3


# -- faults -------------------------------------------------------------------------------


def test_http_error_once_is_retried_by_botocore(proxy: FaultProxy, client: ClientFactory) -> None:
    events = client("events")
    bus = unique("bus")
    events.create_event_bus(Name=bus)
    proxy.add_rule(Rule(operation="Events.PutEvents", action="http_error", status=500, times=1))

    result = events.put_events(
        Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}", "EventBusName": bus}]
    )

    assert result["FailedEntryCount"] == 0
    assert result["ResponseMetadata"]["RetryAttempts"] == 1
    assert proxy.calls["Events.PutEvents"] == 2
    assert proxy.faults_injected == {"Events.PutEvents:http_error": 1}


def test_http_error_has_aws_json_error_shape(proxy: FaultProxy) -> None:
    proxy.add_rule(Rule(operation="Events.*", action="http_error", status=503))
    status, headers, body = raw_request(proxy.url, "AWSEvents.ListEventBuses", "events")
    assert status == 503
    assert headers["Content-Type"] == "application/x-amz-json-1.0"  # echoes the request's
    assert json.loads(body) == {"__type": "InternalFailure", "message": "injected"}


def test_throttle_surfaces_when_retries_are_disabled(
    proxy: FaultProxy, client: ClientFactory
) -> None:
    ddb = client("dynamodb", NO_RETRIES)
    table = make_table(ddb)
    proxy.add_rule(Rule(operation="DynamoDB.*", action="throttle", times=None))

    for _ in range(2):
        with pytest.raises(ddb.exceptions.ProvisionedThroughputExceededException):
            ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})
    assert proxy.calls["DynamoDB.GetItem"] == 2
    assert proxy.faults_injected["DynamoDB.GetItem:throttle"] == 2

    sqs = client("sqs", NO_RETRIES)
    proxy.add_rule(Rule(operation="SQS.ListQueues", action="throttle"))
    with pytest.raises(ClientError) as caught:
        sqs.list_queues()
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"

    proxy.clear_rules()
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})


def test_put_events_partial_delivers_only_surviving_entries(
    proxy: FaultProxy, client: ClientFactory
) -> None:
    events, sqs = client("events"), client("sqs")
    url, arn = make_queue(sqs)
    bus = unique("bus")
    events.create_event_bus(Name=bus)
    events.put_rule(Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["t"]}))
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    entries = [
        {"Source": "t", "DetailType": "d", "Detail": json.dumps({"i": i}), "EventBusName": bus}
        for i in range(6)
    ]
    proxy.add_rule(
        Rule(operation="Events.PutEvents", action="put_events_partial", fail_fraction=0.5, seed=3)
    )

    result = events.put_events(Entries=entries)

    assert result["FailedEntryCount"] == 3
    failed = {i for i, e in enumerate(result["Entries"]) if e.get("ErrorCode")}
    assert len(failed) == 3
    for i, entry in enumerate(result["Entries"]):
        if i in failed:
            assert entry == {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}
        else:
            assert entry["EventId"]
    delivered = {body["detail"]["i"] for body in drain(sqs, url)}
    assert delivered == set(range(6)) - failed

    # Failing every entry must not forward anything at all.
    proxy.add_rule(Rule(operation="Events.PutEvents", action="put_events_partial"))
    result = events.put_events(Entries=entries[:2])
    assert result["FailedEntryCount"] == 2
    assert drain(sqs, url) == []
    assert proxy.faults_injected["Events.PutEvents:put_events_partial"] == 2


def test_drop_is_a_connection_error_and_nothing_is_written(
    proxy: FaultProxy, client: ClientFactory
) -> None:
    sqs = client("sqs", NO_RETRIES)
    url, _ = make_queue(sqs)
    proxy.add_rule(Rule(operation="SQS.SendMessage", action="drop"))

    with pytest.raises(ConnectionClosedError):
        sqs.send_message(QueueUrl=url, MessageBody="lost")

    assert drain(sqs, url) == []
    # With retries on, botocore reconnects and the second attempt goes through.
    proxy.add_rule(Rule(operation="SQS.SendMessage", action="drop"))
    client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps("kept"))
    assert drain(sqs, url) == ["kept"]
    assert proxy.calls["SQS.SendMessage"] == 3


def test_forward_then_drop_writes_but_caller_sees_failure(
    proxy: FaultProxy, client: ClientFactory
) -> None:
    ddb = client("dynamodb", NO_RETRIES)
    table = make_table(ddb)
    proxy.add_rule(Rule(operation="DynamoDB.PutItem", action="forward_then_drop"))

    with pytest.raises(ConnectionClosedError):
        ddb.put_item(TableName=table, Item={"pk": {"S": "written"}})

    direct = client("dynamodb", direct=True)
    assert direct.get_item(TableName=table, Key={"pk": {"S": "written"}})["Item"] == {
        "pk": {"S": "written"}
    }
    assert proxy.faults_injected == {"DynamoDB.PutItem:forward_then_drop": 1}


def test_delay_slows_the_call_but_forwards_it(proxy: FaultProxy, client: ClientFactory) -> None:
    ddb = client("dynamodb")
    proxy.add_rule(Rule(operation="DynamoDB.ListTables", action="delay", delay_seconds=0.3))
    started = time.monotonic()
    ddb.list_tables()
    assert time.monotonic() - started >= 0.3
    assert proxy.calls["DynamoDB.ListTables"] == 1


def test_seeded_probability_is_reproducible(proxy: FaultProxy) -> None:
    proxy.add_rule(
        Rule(
            operation="DynamoDB.ListTables",
            action="http_error",
            times=None,
            probability=0.5,
            seed=7,
        )
    )
    statuses = [
        raw_request(proxy.url, "DynamoDB_20120810.ListTables", "dynamodb")[0] for _ in range(20)
    ]

    rng = random.Random(7)
    expected = [500 if rng.random() < 0.5 else 200 for _ in range(20)]
    assert statuses == expected
    assert proxy.faults_injected["DynamoDB.ListTables:http_error"] == expected.count(500)


def test_first_firing_rule_wins_and_times_are_exact_under_concurrency(proxy: FaultProxy) -> None:
    proxy.add_rule(Rule(operation="DynamoDB.ListTables", action="throttle", times=5))
    proxy.add_rule(Rule(operation="DynamoDB.*", action="http_error", times=3))
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            status = raw_request(proxy.url, "DynamoDB_20120810.ListTables", "dynamodb")[0]
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert proxy.calls["DynamoDB.ListTables"] == 80
    assert statuses.count(400) == 5
    assert statuses.count(500) == 3
    assert statuses.count(200) == 72


def test_unreachable_upstream_answers_502() -> None:
    with FaultProxy(upstream="http://127.0.0.1:9") as proxy:
        status, _, body = raw_request(proxy.url, "DynamoDB_20120810.ListTables", "dynamodb")
    assert status == 502
    assert json.loads(body)["__type"] == "BadGateway"


def test_cli_runs_until_sigterm(moto_url: str) -> None:
    rule = json.dumps({"operation": "DynamoDB.ListTables", "action": "http_error", "times": 1})
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.fault_proxy", "--upstream", moto_url, "--port", "0",
         "--rule", rule],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, "CLI did not announce its address"
        line = process.stdout.readline().strip()
        assert line.startswith("fault proxy listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert raw_request(url, "DynamoDB_20120810.ListTables", "dynamodb")[0] == 500
        assert raw_request(url, "DynamoDB_20120810.ListTables", "dynamodb")[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

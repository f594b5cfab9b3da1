"""The local stack, running: moto and the OpenAI emulator on loopback, resources provisioned
from template.yaml, and the function invoked in-process the way Lambda would invoke it: by the
queue's SQS event source mapping. The bus's rules send to that queue (moto delivers them, as
EventBridge would) and schedules fire into it (emulated)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from batch_canceller.app import Application
from batch_canceller.config import Settings
from batch_canceller.service import build_application
from infra.local_stack.provision import REGION, ProvisionedStack, provision
from infra.local_stack.scheduler import LocalScheduler
from infra.local_stack.sqs_event_source import SqsEventSource
from infra.moto_patches import prepare_moto
from infra.openai_emulator import OpenAIEmulator

LOCAL_API_KEY = "sk-local-demo-key-not-a-secret"
# Fast follow-through so a person watching sees batches reach `cancelled` within seconds.
LOCAL_PARAMETERS = {
    "PollInitialDelaySeconds": "2",
    "PollMaxDelaySeconds": "4",
    "QueueMaximumBatchingWindowInSeconds": "0",
}


@dataclass
class LocalStack:
    aws_port: int = 0
    openai_port: int = 0
    cancel_delay_seconds: float = 4.0
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    # Local visibility timeout: a failed message comes back in seconds, not the deployed 17 min.
    visibility_timeout_seconds: int = 5
    handler_errors: int = 0

    def start(self) -> LocalStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        prepare_moto()  # DynamoDB writes atomic, as on AWS
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.aws_endpoint = f"http://{host}:{port}"
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any credentials
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        self.openai = OpenAIEmulator(
            api_keys={LOCAL_API_KEY},
            cancel_delay_seconds=self.cancel_delay_seconds,
            port=self.openai_port,
        ).start()
        parameters = {**LOCAL_PARAMETERS, "OpenAIBaseUrl": self.openai.base_url}
        parameters.update(self.parameter_overrides)
        self.provisioned: ProvisionedStack = provision(
            self.aws_endpoint, api_key=LOCAL_API_KEY, parameter_overrides=parameters
        )
        for source in self.provisioned.sqs_sources:
            self.client("sqs").set_queue_attributes(
                QueueUrl=source.queue_url,
                Attributes={"VisibilityTimeout": str(self.visibility_timeout_seconds)},
            )
        env = self.provisioned.function_environment
        os.environ.update({k: v for k, v in env.items() if k.startswith("POWERTOOLS_")})
        self.application: Application = build_application(Settings.from_env(env))
        self.observer_queue_url = self._observe_bus()
        self.scheduler = LocalScheduler(
            self.client("scheduler"), self.client("sqs"), self.provisioned.queue_urls_by_arn
        )
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run_queue, daemon=True, name="sqs-event-source"),
            threading.Thread(target=self._run_scheduler, daemon=True, name="scheduler"),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.openai.stop()
        self._moto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for the demo, the CLI and people ------------------------------------------

    def client(self, service: Any) -> Any:
        return boto3.session.Session(region_name=REGION).client(
            service, endpoint_url=self.aws_endpoint
        )

    @property
    def outputs(self) -> dict[str, str]:
        return self.provisioned.outputs

    def state(self) -> dict[str, Any]:
        return self.provisioned.state(self.openai.base_url)

    def observed_events(self) -> list[dict[str, Any]]:
        """Events the function published (read from an observer queue on the bus)."""
        sqs = self.client("sqs")
        events: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.observer_queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.observer_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    # -- the emulated invokers ---------------------------------------------------------------

    def _observe_bus(self) -> str:
        sqs, events = self.client("sqs"), self.client("events")
        bus = self.outputs["EventBusName"]
        url = sqs.create_queue(QueueName="local-observer")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        source = self.provisioned.function_environment.get("EVENT_SOURCE", "batch-canceller")
        events.put_rule(
            Name="local-observer", EventBusName=bus, EventPattern=json.dumps({"source": [source]})
        )
        events.put_targets(
            Rule="local-observer", EventBusName=bus, Targets=[{"Id": "observer", "Arn": arn}]
        )
        return str(url)

    def _run_queue(self) -> None:
        sources = [
            SqsEventSource(
                self.client("sqs"),
                spec.queue_url,
                self.application.handle,
                batch_size=spec.batch_size,
                batching_window_seconds=spec.batching_window_seconds,
                function_timeout_seconds=self.provisioned.function_timeout_seconds,
            )
            for spec in self.provisioned.sqs_sources
        ]
        while not self._stop.is_set():
            for source in sources:
                result = source.poll_once(wait_seconds=1)
                self.handler_errors += result.handler_errors

    def _run_scheduler(self) -> None:
        while not self._stop.wait(1.0):
            self.scheduler.tick()


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

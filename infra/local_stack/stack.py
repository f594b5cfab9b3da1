"""The local stack, running: moto and the OpenAI emulator on loopback, resources provisioned
from template.yaml, and the function invoked in-process the way Lambda would invoke it: by the
queue's SQS event source mapping. The bus's rules send to that queue (moto delivers them, as
EventBridge would) and schedules fire into it (emulated).

A function with a `FunctionUrlConfig` in the template (the webhook receiver) is served by an
emulated function URL (`function_url.py`) on `webhook_port`, with its handler imported by its
dotted name and its environment from the template; the OpenAI emulator sends its webhooks
there, signed with the secret provisioned for it. Without such a function, none of this runs;
`webhooks=False` drops it from the template (as a stack deployed without a webhook secret):
polling alone follows cancellations."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from batch_canceller.app import Application
from batch_canceller.config import Settings
from batch_canceller.service import build_application
from infra.local_stack.function_url import FunctionUrlServer, Handler
from infra.local_stack.provision import REGION, ProvisionedStack, provision
from infra.local_stack.scheduler import LocalScheduler
from infra.local_stack.sqs_event_source import SqsEventSource
from infra.local_stack.url_functions import UrlFunction, url_function_ids, without_url_functions
from infra.moto_patches import prepare_moto
from infra.openai_emulator import OpenAIEmulator
from infra.sam.template import load_template

LOCAL_API_KEY = "sk-local-demo-key-not-a-secret"
# Fast follow-through so a person watching sees batches reach `cancelled` within seconds.
LOCAL_PARAMETERS = {
    "PollInitialDelaySeconds": "2",
    "PollMaxDelaySeconds": "8",
    # With webhooks on (the local stack serves the webhook function's URL), the first check
    # waits longest (600 s deployed, at most the longest delay): here twice the emulator's
    # 4 s cancel, so the webhook comes first and a lost one is still caught in seconds.
    "WebhookFirstCheckDelaySeconds": "8",
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
    webhook_port: int = 0
    template: dict[str, Any] | None = None  # None: template.yaml
    function_url: FunctionUrlServer | None = None  # when the template has a URL function
    webhooks: bool = True  # False: no URL function, so WEBHOOKS_ENABLED=false
    # The canceller's boto3 session (None: a default one); the bench's counts its calls.
    session: Any = None
    # Builds the URL function's handler (None: imported by its dotted `Handler`).
    url_handler: Callable[[UrlFunction], Handler] | None = None
    invocations: int = 0  # the canceller's, by the emulated SQS event source
    messages_handled: int = 0

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
        template = self.template if self.template is not None else load_template()
        if not self.webhooks:
            template = without_url_functions(template)
        function_urls = self._start_function_url(template)
        self.provisioned: ProvisionedStack = provision(
            self.aws_endpoint,
            api_key=LOCAL_API_KEY,
            parameter_overrides=parameters,
            template=template,
            function_urls=function_urls,
        )
        for source in self.provisioned.sqs_sources:
            self.client("sqs").set_queue_attributes(
                QueueUrl=source.queue_url,
                Attributes={"VisibilityTimeout": str(self.visibility_timeout_seconds)},
            )
        env = self.provisioned.function_environment
        os.environ.update({k: v for k, v in env.items() if k.startswith("POWERTOOLS_")})
        self.application: Application = build_application(
            Settings.from_env(env), session=self.session
        )
        self._serve_url_function()
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
        if self.function_url is not None:
            self.function_url.stop()
        self.openai.stop()
        # moto keeps its state in this process, not in its server: without a reset, the next
        # stack started in this process finds this one's secret, table and queues.
        reset = urllib.request.Request(  # noqa: S310 - our loopback server
            f"{self.aws_endpoint}/moto-api/reset", method="POST"
        )
        with contextlib.suppress(OSError):
            urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our loopback server
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
        state = self.provisioned.state(self.openai.base_url)
        if self.webhook_url is not None:
            # The secret's ID, not the secret: the CLI reads it from Secrets Manager.
            state["webhook"] = {
                "url": self.webhook_url,
                "secret_id": self.provisioned.webhook_secret_arn,
                "function": self.provisioned.url_functions[0].logical_id,
            }
        return state

    @property
    def webhook_url(self) -> str | None:
        """The emulated function URL the emulator sends webhooks to; None without one."""
        return None if self.function_url is None else self.function_url.base_url + "/"

    @property
    def webhook_secret(self) -> str | None:
        return self.provisioned.webhook_secret

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

    def _start_function_url(self, template: dict[str, Any]) -> dict[str, str]:
        """Bind the URL first (its handler comes once provisioned): the template's outputs
        may name the URL, and the port may be 0."""
        ids = url_function_ids(template)
        if not ids:
            return {}
        if len(ids) > 1:
            raise ValueError(f"the local stack emulates one function URL, the template has {ids}")
        self.function_url = FunctionUrlServer(_not_ready, port=self.webhook_port).start()
        return {ids[0]: self.function_url.base_url + "/"}

    def _serve_url_function(self) -> None:
        if self.function_url is None:
            return
        (function,) = self.provisioned.url_functions
        # One process for both functions: the receiver's handler reads os.environ, as on Lambda.
        os.environ.update(function.environment)
        if self.url_handler is not None:
            handler = self.url_handler(function)
        else:
            module_name, _, attribute = function.handler.rpartition(".")
            handler = getattr(importlib.import_module(module_name), attribute)
        self.function_url.function_name = function.function_name
        self.function_url.timeout_seconds = function.timeout_seconds
        self.function_url.handler = handler
        self.openai.webhooks.configure(
            {"url": self.webhook_url, "secret": self.provisioned.webhook_secret}
        )

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
                self.invocations += 1 if result.received else 0
                self.messages_handled += result.received

    def _run_scheduler(self) -> None:
        while not self._stop.wait(1.0):
            self.scheduler.tick()


def _not_ready(event: dict[str, Any], context: Any) -> Any:
    return {"statusCode": 503, "body": "starting"}


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

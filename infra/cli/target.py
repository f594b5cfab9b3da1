"""Where the stack is: a deployed CloudFormation stack, or the local stack's state file.

Either way the commands see one `Target`: a region, an AWS endpoint (None = the standard
resolution: real AWS unless `AWS_ENDPOINT_URL` says otherwise), the stack outputs, and a way
to invoke the function (Lambda for a deployed stack, in-process for the local one).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from infra.cli import OperationFailed, UsageError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_sqs import SQSClient

STACK_ENV = "BATCH_CANCELLER_STACK"
# The local stack's state file when --local names none (its directory: $LOCAL_STACK_DIR).
DEFAULT_STATE_FILE = ".local-stack/state.json (or $LOCAL_STACK_DIR/state.json)"
OUTPUT_NAMES = (
    "CancelQueueUrl",
    "CancelQueueArn",
    "DeadLetterQueueUrl",
    "BatchesTableName",
    "EventBusName",
    "EventBusArn",
    "FunctionName",
    "ScheduleGroupName",
    "SchedulerRoleArn",
)
# The in-process function gets as long as a deployed one may run.
LOCAL_FUNCTION_TIMEOUT_SECONDS = 900.0
# The moto-backed local stack accepts any credentials; these are used only when none are set.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
)
# A synchronous invoke may run as long as the function's timeout; a timed-out sweep is not
# re-sent behind the user's back.
_INVOKE_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=905)


@dataclass(frozen=True)
class Target:
    region: str
    aws_endpoint: str | None
    outputs: Mapping[str, str]
    description: str
    function_environment: Mapping[str, str] | None = None
    # The local stack's state file: checked to be running at the first AWS call or invoke.
    state_file: Path | None = None
    # The local stack's function URL: {"url": ..., "secret_id": ...} (the secret's ID only).
    webhook: Mapping[str, str] | None = None
    _session: boto3.session.Session | None = field(default=None, compare=False, repr=False)

    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            raise UsageError(f"the {self.description} has no output {name!r}, which this needs")
        return value

    def optional_output(self, name: str) -> str | None:
        return self.outputs.get(name) or None

    # -- clients ---------------------------------------------------------------------------

    def client(self, service: str, config: Config | None = None) -> Any:
        return self._boto_session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws_endpoint,
            config=config or _CLIENT_CONFIG,
        )

    def sqs(self) -> SQSClient:
        client: SQSClient = self.client("sqs")
        return client

    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.client("dynamodb")
        return client

    def scheduler(self) -> EventBridgeSchedulerClient:
        client: EventBridgeSchedulerClient = self.client("scheduler")
        return client

    def _boto_session(self) -> boto3.session.Session:
        if self._session is not None:
            return self._session
        self._ensure_running()
        session = boto3.session.Session(region_name=self.region)
        if self.aws_endpoint is not None and session.get_credentials() is None:
            session = boto3.session.Session(
                region_name=self.region,
                aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
        object.__setattr__(self, "_session", session)  # cached: one credential lookup per run
        return session

    def _ensure_running(self) -> None:
        if self.state_file is not None and self.aws_endpoint is not None:
            _ensure_running(self.aws_endpoint, self.state_file)

    # -- the function ----------------------------------------------------------------------

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run the function on a direct-invoke payload and return its answer."""
        if self.function_environment is not None:
            return self._invoke_in_process(payload)
        return self._invoke_lambda(payload)

    def _invoke_lambda(self, payload: dict[str, Any]) -> dict[str, Any]:
        name = self.output("FunctionName")
        try:
            answer = self.client("lambda", config=_INVOKE_CONFIG).invoke(
                FunctionName=name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode("utf-8"),
            )
            raw = answer["Payload"].read()
        except (ClientError, BotoCoreError) as exc:
            raise OperationFailed(f"invoking {name} failed: {exc}") from None
        try:
            result = json.loads(raw) if raw else None
        except ValueError:
            raise OperationFailed(f"{name} answered with something that is not JSON") from None
        if answer.get("FunctionError"):
            message = result.get("errorMessage") if isinstance(result, dict) else None
            raise OperationFailed(f"{name} failed: {message or answer['FunctionError']}")
        if not isinstance(result, dict):
            raise OperationFailed(f"{name} answered {type(result).__name__}, not an object")
        return result

    def _invoke_in_process(self, payload: dict[str, Any]) -> dict[str, Any]:
        # Imported here: only the local stack needs the function's code in this process.
        from batch_canceller.config import ConfigurationError, Settings
        from batch_canceller.service import build_application
        from infra.local_stack.lambda_context import LocalLambdaContext

        assert self.function_environment is not None
        self._ensure_running()
        try:
            settings = Settings.from_env(self.function_environment)
        except ConfigurationError as exc:
            raise UsageError(f"function_environment of the {self.description}: {exc}") from None
        with _function_process_env(self.aws_endpoint, self.region), _function_logs_to_stderr():
            application = build_application(
                settings, session=boto3.session.Session(region_name=self.region)
            )
            try:
                return application.handle(
                    payload, LocalLambdaContext(timeout_seconds=LOCAL_FUNCTION_TIMEOUT_SECONDS)
                )
            except Exception as exc:
                raise OperationFailed(f"the function failed: {type(exc).__name__}: {exc}") from None


def resolve_target(
    stack_name: str | None,
    region: str | None,
    local: str | None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """`--local` wins, then `--stack-name`, then $BATCH_CANCELLER_STACK."""
    environ = os.environ if environ is None else environ
    if local is not None:
        return from_state_file(Path(local))
    name = stack_name or environ.get(STACK_ENV, "").strip() or None
    if name is None:
        raise UsageError(
            f"which stack? Pass --stack-name NAME (or set {STACK_ENV}),"
            f" or --local [STATE_FILE] for the local stack (default {DEFAULT_STATE_FILE})"
        )
    return from_stack(name, region)


def from_state_file(path: Path) -> Target:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"no local stack state at {path}: start the local stack (make local) or pass its path"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the local stack state {path}: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError(f"the local stack state {path} is not a JSON object")
    endpoint = document.get("aws_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise UsageError(f"the local stack state {path} needs 'aws_endpoint', an http(s) URL")
    region = document.get("region") or "us-east-1"
    outputs = _string_map(document.get("outputs"), f"'outputs' in {path}")
    environment = document.get("function_environment")
    webhook = document.get("webhook")
    return Target(
        region=str(region),
        aws_endpoint=endpoint.rstrip("/"),
        outputs=outputs,
        description=f"local stack ({path})",
        state_file=path,
        function_environment=(
            None
            if environment is None
            else _string_map(environment, f"'function_environment' in {path}")
        ),
        webhook=None if webhook is None else _string_map(webhook, f"'webhook' in {path}"),
    )


def _ensure_running(endpoint: str, path: Path) -> None:
    """A state file outlives a stack that was killed: say so once, instead of every AWS call
    (and the in-process function, which would blame its configuration) failing on a refused
    connection in its own words."""
    url = urllib.parse.urlsplit(endpoint)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise UsageError(
        f"the local stack in {path} is not running ({endpoint}: {reason.lower()}):"
        " start it with `make local` (it removes its state file when it stops; this one was"
        " left by a stack that was killed)"
    )


def from_stack(stack_name: str, region: str | None) -> Target:
    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    if not session.region_name:
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    try:
        answer = session.client("cloudformation", config=_CLIENT_CONFIG).describe_stacks(
            StackName=stack_name
        )
    except NoCredentialsError:
        raise UsageError(
            "no AWS credentials found (set AWS_PROFILE or the AWS_* variables)"
        ) from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise UsageError(
            f"cannot read stack {stack_name!r} in {session.region_name}: {message}"
        ) from None
    except BotoCoreError as exc:
        raise OperationFailed(f"cannot reach CloudFormation: {exc}") from None
    stacks = answer.get("Stacks") or []
    if not stacks:
        raise UsageError(f"stack {stack_name!r} not found in {session.region_name}")
    outputs = {
        str(output["OutputKey"]): str(output["OutputValue"])
        for output in stacks[0].get("Outputs", [])
        if "OutputKey" in output and "OutputValue" in output
    }
    return Target(
        region=session.region_name,
        aws_endpoint=None,
        outputs=outputs,
        description=f"stack {stack_name!r} ({session.region_name})",
        _session=session,
    )


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object")
    return {str(key): str(item) for key, item in value.items() if item is not None}


@contextmanager
def _function_process_env(endpoint: str | None, region: str) -> Iterator[None]:
    """The function finds AWS through the standard variables; point them at the local stack
    for the call and put everything back afterwards."""
    wanted: dict[str, str] = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    if endpoint is not None:
        wanted["AWS_ENDPOINT_URL"] = endpoint
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        wanted.update(LOCAL_CREDENTIALS)
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextmanager
def _function_logs_to_stderr() -> Iterator[None]:
    """The function logs JSON to stdout (as on Lambda); in the CLI stdout carries the answer,
    so its logs go to stderr, warnings and worse only."""
    from batch_canceller.observability import SERVICE

    function_logger = logging.getLogger(SERVICE)
    saved_level = function_logger.level
    streams: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in function_logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            streams.append((handler, handler.setStream(sys.stderr)))
    function_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        function_logger.setLevel(saved_level)
        for handler, stream in streams:
            if stream is not None:
                handler.setStream(stream)

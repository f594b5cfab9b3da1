"""Name the AWS operation an HTTP request performs, without any AWS SDK."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qs, urlsplit

# SigV4 credential scope: Credential=AKID/20240101/us-east-1/scheduler/aws4_request
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")

# Signing name (credential scope service) -> short name used in operation names.
SERVICE_NAMES: dict[str, str] = {
    "dynamodb": "DynamoDB",
    "events": "Events",
    "sqs": "SQS",
    "scheduler": "Scheduler",
    "secretsmanager": "SecretsManager",
    "ssm": "SSM",
}

# X-Amz-Target prefix -> short name (JSON protocols).
_TARGET_PREFIXES: dict[str, str] = {
    "DynamoDB_20120810": "DynamoDB",
    "DynamoDBStreams_20120810": "DynamoDBStreams",
    "AWSEvents": "Events",
    "AmazonSQS": "SQS",
    "secretsmanager": "SecretsManager",
    "AmazonSSM": "SSM",
}

# EventBridge Scheduler is REST-JSON: the operation is implied by method + path shape.
_SCHEDULER_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "schedules"): "ListSchedules",
    ("POST", "schedules/*"): "CreateSchedule",
    ("GET", "schedules/*"): "GetSchedule",
    ("PUT", "schedules/*"): "UpdateSchedule",
    ("DELETE", "schedules/*"): "DeleteSchedule",
    ("GET", "schedule-groups"): "ListScheduleGroups",
    ("POST", "schedule-groups/*"): "CreateScheduleGroup",
    ("GET", "schedule-groups/*"): "GetScheduleGroup",
    ("DELETE", "schedule-groups/*"): "DeleteScheduleGroup",
    ("GET", "tags/*"): "ListTagsForResource",
    ("POST", "tags/*"): "TagResource",
    ("DELETE", "tags/*"): "UntagResource",
}


class Protocol(Enum):
    """AWS wire protocol of a request; decides the shape of injected errors."""

    JSON = "json"  # X-Amz-Target + application/x-amz-json-1.x
    QUERY = "query"  # form-encoded Action=...
    REST_JSON = "rest-json"  # operation implied by method + path


@dataclass(frozen=True)
class Request:
    """A fully read client request. ``path`` includes the query string."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def scope_service(self) -> str | None:
        """Signing name from the SigV4 Authorization header, e.g. ``"scheduler"``."""
        match = _SCOPE.search(self.header("Authorization") or "")
        return match.group(2) if match else None

    @property
    def target(self) -> str | None:
        return self.header("X-Amz-Target")

    @property
    def query_action(self) -> str | None:
        """``Action`` of a Query-protocol request, from the form body or the URL."""
        content_type = (self.header("Content-Type") or "").lower()
        sources = [urlsplit(self.path).query]
        if content_type.startswith("application/x-www-form-urlencoded"):
            sources.insert(0, self.body.decode("utf-8", "replace"))
        for source in sources:
            actions = parse_qs(source).get("Action")
            if actions:
                return actions[0]
        return None

    @property
    def protocol(self) -> Protocol:
        if self.target:
            return Protocol.JSON
        if self.query_action:
            return Protocol.QUERY
        return Protocol.REST_JSON


def service_of(request: Request) -> str:
    """Short service name (``"DynamoDB"``), falling back to the raw signing name."""
    target = request.target
    if target and "." in target:
        prefix = target.split(".", 1)[0]
        if prefix in _TARGET_PREFIXES:
            return _TARGET_PREFIXES[prefix]
    scope = request.scope_service
    if scope:
        return SERVICE_NAMES.get(scope, scope)
    if target and "." in target:
        return target.split(".", 1)[0]
    return "Unknown"


def _rest_operation(service: str, method: str, path: str) -> str | None:
    if service != "Scheduler":
        return None
    parts = [p for p in urlsplit(path).path.split("/") if p]
    if not parts:
        return None
    shape = parts[0] if len(parts) == 1 else f"{parts[0]}/*"
    return _SCHEDULER_ROUTES.get((method, shape))


def operation_of(request: Request) -> str:
    """``"<Service>.<Operation>"``, e.g. ``"DynamoDB.UpdateItem"``.

    Unknown REST calls become ``"<service>.<METHOD> <path>"`` so they can still
    be counted and matched by glob rules.
    """
    service = service_of(request)
    target = request.target
    if target:
        return f"{service}.{target.rsplit('.', 1)[-1]}"
    action = request.query_action
    if action:
        return f"{service}.{action}"
    method = request.method.upper()
    rest = _rest_operation(service, method, request.path)
    if rest:
        return f"{service}.{rest}"
    return f"{service}.{method} {urlsplit(request.path).path}"

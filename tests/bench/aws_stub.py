"""AWS answered in-process, at once: to measure the function's own cost without moto's.

boto3 still serialises, signs and parses every call (that CPU is the function's on Lambda
too); only the network and the server are replaced, through botocore's `before-send` event.
Stateless and optimistic: every condition passes, and UpdateItem's ALL_NEW is the key plus what
the update sets and adds, which is exact for items the run has not written before.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

from botocore.awsrequest import AWSResponse

_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b")


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()


class AwsStub:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, boto_client: Any) -> None:
        boto_client.meta.events.register("before-send", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        operation = target.rsplit(".", 1)[-1]
        body = json.loads(request.body or b"{}")
        self.calls[operation] += 1
        answer = getattr(self, f"_{operation}", self._empty)(body)
        raw = _RawBody(json.dumps(answer).encode())
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "stub"}
        return AWSResponse(request.url, 200, cast(Any, headers), raw)

    @staticmethod
    def _empty(_: dict[str, Any]) -> dict[str, Any]:
        return {}

    @staticmethod
    def _UpdateItem(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("ReturnValues") != "ALL_NEW":
            return {}
        names: dict[str, str] = body.get("ExpressionAttributeNames", {})
        values: dict[str, Any] = body.get("ExpressionAttributeValues", {})
        item = dict(body["Key"])
        parts = _CLAUSE.split(body["UpdateExpression"])
        for clause, text in zip(parts[1::2], parts[2::2], strict=True):
            for action in filter(None, (a.strip() for a in text.split(","))):
                if clause == "SET":
                    path, value = (side.strip() for side in action.split("=", 1))
                    item[names.get(path, path)] = values[value]
                elif clause == "ADD":
                    path, value = action.split()
                    item[names.get(path, path)] = values[value]
        return {"Attributes": item}

    @staticmethod
    def _PutEvents(body: dict[str, Any]) -> dict[str, Any]:
        entries = [{"EventId": str(uuid.uuid4())} for _ in body["Entries"]]
        return {"FailedEntryCount": 0, "Entries": entries}

    @staticmethod
    def _SendMessageBatch(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "Successful": [
                {
                    "Id": entry["Id"],
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                }
                for entry in body["Entries"]
            ],
            "Failed": [],
        }


class StubSession:
    """Stands in for boto3.Session in `build_application`: clients answered by an AwsStub."""

    def __init__(self, stub: AwsStub, region: str = "us-east-1") -> None:
        import boto3

        self._session = boto3.session.Session(region_name=region)
        self._stub = stub
        self.region_name = region

    def client(self, service: Any, **kwargs: Any) -> Any:
        made = self._session.client(service, endpoint_url="http://aws.stub.invalid", **kwargs)
        self._stub.attach(made)
        return made

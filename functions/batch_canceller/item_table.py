"""One item per batch in the BatchesTable: conditional UpdateItems that answer with the item
(or, when the caller needs it only on failure, with nothing on success), shared by the record's
writes (`store`) and the event ledger's (`event_ledger`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batch_canceller.records import BatchRecord, SaveResult, utc_now

BATCH_GET_MAX_KEYS = 100
BATCH_GET_ATTEMPTS = 6

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class ItemTable:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def get(self, batch_id: str) -> BatchRecord | None:
        answer = self._client.get_item(
            TableName=self._table, Key={"batch_id": {"S": batch_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        return BatchRecord.from_attributes(item) if item else None

    def get_many(self, batch_ids: Sequence[str]) -> list[BatchRecord]:
        """The items of `batch_ids`, read consistently (batches without an item are left out)."""
        return [BatchRecord.from_attributes(item) for item in self._batch_get(batch_ids)]

    def _batch_get(
        self, batch_ids: Sequence[str], projection: str | None = None
    ) -> list[dict[str, Any]]:
        """BatchGetItem, 100 keys a request, consistent, retrying throttled (unprocessed) keys."""
        items: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(batch_ids))
        for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
            keys = [{"batch_id": {"S": b}} for b in unique[start : start + BATCH_GET_MAX_KEYS]]
            wanted: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
            if projection is not None:
                wanted["ProjectionExpression"] = projection
            request: dict[str, Any] = {self._table: wanted}
            for attempt in range(BATCH_GET_ATTEMPTS):
                answer = self._client.batch_get_item(RequestItems=request)
                items.extend(answer.get("Responses", {}).get(self._table, []))
                request = dict(answer.get("UnprocessedKeys") or {})
                if not request:
                    break
                # Throttled keys come back unprocessed; back off before asking again.
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(
                    f"BatchGetItem left keys unprocessed after {BATCH_GET_ATTEMPTS} tries"
                )
        return items

    def _update_if(self, batch_id: str, **request: Any) -> bool:
        """A conditional UpdateItem on the batch's item; False when its condition failed."""
        try:
            self._client.update_item(
                TableName=self._table, Key={"batch_id": {"S": batch_id}}, **request
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def _update(
        self,
        batch_id: str,
        expression: str,
        values: dict[str, Any],
        condition: str | None,
        names: dict[str, str] | None = None,
        claims: str | None = None,
    ) -> SaveResult:
        """An UpdateItem answering with the item after it, or as it was if the condition
        failed; `claims` is the event the write claims when it succeeds."""
        request = self._request(batch_id, expression, values, condition, names)
        try:
            answer = self._client.update_item(**request, ReturnValues="ALL_NEW")
        except ClientError as exc:
            return SaveResult(self._current_on_failure(batch_id, exc), changed=False)
        claimed = frozenset({claims}) if claims else frozenset()
        return SaveResult(BatchRecord.from_attributes(answer["Attributes"]), True, claimed)

    def _update_or_current(
        self,
        batch_id: str,
        expression: str,
        values: dict[str, Any],
        condition: str,
        names: dict[str, str] | None = None,
    ) -> BatchRecord | None:
        """A conditional UpdateItem whose caller needs the item only when the condition
        failed: None when the write passed (answered with no attributes, so nothing to parse),
        else the item as it was."""
        request = self._request(batch_id, expression, values, condition, names)
        try:
            self._client.update_item(**request, ReturnValues="NONE")
        except ClientError as exc:
            return self._current_on_failure(batch_id, exc)
        return None

    def _request(
        self,
        batch_id: str,
        expression: str,
        values: dict[str, Any],
        condition: str | None,
        names: dict[str, str] | None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"batch_id": {"S": batch_id}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if condition:
            request["ConditionExpression"] = condition
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return request

    def _current_on_failure(self, batch_id: str, exc: ClientError) -> BatchRecord:
        """The item a write's failed condition was checked against; raises `exc` for any other
        failure (or when there is no item)."""
        if not _is_condition_failure(exc):
            raise exc
        current: Any = exc.response.get("Item")
        if current is None:
            current = self._client.get_item(
                TableName=self._table, Key={"batch_id": {"S": batch_id}}, ConsistentRead=True
            ).get("Item")
        if current is None:
            raise exc
        return BatchRecord.from_attributes(current)


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"

"""One item per batch in the BatchesTable: conditional UpdateItems that answer with the item,
shared by the record's writes (`store`) and the event ledger's (`event_ledger`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batch_canceller.records import BatchRecord, SaveResult, utc_now

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
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"batch_id": {"S": batch_id}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if condition:
            request["ConditionExpression"] = condition
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            answer = self._client.update_item(**request)
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            current: Any = exc.response.get("Item")
            if current is None:
                current = self._client.get_item(
                    TableName=self._table, Key={"batch_id": {"S": batch_id}}, ConsistentRead=True
                ).get("Item")
            if current is None:
                raise
            return SaveResult(BatchRecord.from_attributes(current), changed=False)
        claimed = frozenset({claims}) if claims else frozenset()
        return SaveResult(BatchRecord.from_attributes(answer["Attributes"]), True, claimed)


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"

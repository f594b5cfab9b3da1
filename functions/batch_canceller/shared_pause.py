"""The end of a rate-limit pause, shared by concurrent invocations through one item of the
BatchesTable.

Its key is not a batch ID (those are `[A-Za-z0-9_-]`, checked before any request), so no
command, status check or CLI lookup can name it; it has none of `status`, `updated_at` or
`follow_through`, so neither the status index nor the sparse follow-through index (the
reconciler's) holds it. Only `paused_until` (epoch seconds) and `set_at` are written, by a
conditional write that only moves the end later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PAUSE_ITEM_KEY = "#api-rate-limit-pause"


class SharedPause:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def read(self) -> float | None:
        answer = self._client.get_item(
            TableName=self._table,
            Key={"batch_id": {"S": PAUSE_ITEM_KEY}},
            ConsistentRead=True,
            ProjectionExpression="paused_until",
        )
        value = answer.get("Item", {}).get("paused_until", {}).get("N")
        return float(value) if value is not None else None

    def publish(self, until: float) -> None:
        """Moves the shared end to `until`, unless it is already as late (then nothing)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"batch_id": {"S": PAUSE_ITEM_KEY}},
                UpdateExpression="SET paused_until = :until, set_at = :now",
                ConditionExpression="attribute_not_exists(paused_until) OR paused_until < :until",
                ExpressionAttributeValues={
                    ":until": {"N": f"{until:.3f}"},
                    ":now": {"N": f"{self._clock():.3f}"},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

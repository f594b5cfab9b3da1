"""The end of a rate-limit pause, shared by concurrent invocations through one item of the
BatchesTable.

Its key is not a batch ID (those are `[A-Za-z0-9_-]`, checked before any request), so no
command, status check or CLI lookup can name it; it has none of `status`, `updated_at` or
`follow_through`, so neither the status index nor the sparse follow-through index (the
reconciler's) holds it. Only `paused_until` (epoch seconds) and `set_at` are written, by a
conditional write that only moves the end later.

With `max_ahead` (the function's: api_pacing.MAX_PAUSE_SECONDS), no end is written or read
further ahead than that. A stored end further ahead than any writer could mean (a writer
whose clock runs hours fast) is ignored on read and replaced by the next write, which the
write's condition would otherwise refuse until that end had passed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

PAUSE_ITEM_KEY = "#api-rate-limit-pause"
# A writer's clock may run this far ahead of the reader's and its end still be believed.
CLOCK_TOLERANCE_SECONDS = 5.0


class SharedPause:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        clock: Callable[[], float] = time.time,
        max_ahead: float | None = None,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._max_ahead = max_ahead

    def read(self) -> float | None:
        answer = self._client.get_item(
            TableName=self._table,
            Key={"batch_id": {"S": PAUSE_ITEM_KEY}},
            ConsistentRead=True,
            ProjectionExpression="paused_until",
        )
        value = answer.get("Item", {}).get("paused_until", {}).get("N")
        if value is None:
            return None
        until = float(value)
        if self._max_ahead is None:
            return until
        latest = self._clock() + self._max_ahead
        return None if until > latest + CLOCK_TOLERANCE_SECONDS else min(until, latest)

    def publish(self, until: float) -> None:
        """Moves the shared end to `until` (at most `max_ahead` from now), unless it is already
        as late (then nothing), or replaces an end too far ahead to be meant."""
        now = self._clock()
        condition = "attribute_not_exists(paused_until) OR paused_until < :until"
        values: dict[str, AttributeValueTypeDef] = {":now": {"N": f"{now:.3f}"}}
        if self._max_ahead is not None:
            until = min(until, now + self._max_ahead)
            implausible = now + self._max_ahead + CLOCK_TOLERANCE_SECONDS
            values[":implausible"] = {"N": f"{implausible:.3f}"}
            condition += " OR paused_until > :implausible"
        if not math.isfinite(until):
            return  # no end to share (and DynamoDB stores no inf)
        values[":until"] = {"N": f"{until:.3f}"}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"batch_id": {"S": PAUSE_ITEM_KEY}},
                UpdateExpression="SET paused_until = :until, set_at = :now",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

"""`status`: the stored records of some batches, or of every batch still `cancelling`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.commands import InvalidInput, validate_batch_id
from batch_canceller.json_values import from_item, plain
from infra.cli import EXIT_FAILED, EXIT_OK, OperationFailed, UsageError
from infra.cli.flags import in_flags
from infra.cli.output import print_json, print_lines, print_note, print_table, shorten
from infra.cli.owed_events import explain
from infra.cli.target import Target

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEYS_PER_BATCH_GET = 100  # BatchGetItem's limit
STATUS_INDEX = "status-index"
PENDING_STATUS = "cancelling"
NOT_FOUND = "not found"
# A record that holds only bookkeeping (a cancel_at schedule's note): no cancel was sent yet.
NOT_SENT = "no cancel sent yet"
MAX_UNPROCESSED_ROUNDS = 8
HEADERS = (
    "batch_id",
    "status",
    "updated_at",
    "reason",
    "requested_by",
    "last_error",
    "events_announced",
)


@dataclass(frozen=True)
class StatusOptions:
    ids: Sequence[str] = ()
    pending: bool = False
    json: bool = False


def run(target: Target, options: StatusOptions) -> int:
    if options.pending == bool(options.ids):
        raise UsageError("give batch IDs or --pending (not both)")
    table = target.output("BatchesTableName")
    ids = list(dict.fromkeys(_validated(options.ids)))  # before any AWS call
    reader = RecordReader(target.dynamodb(), table)
    try:
        if options.pending:
            records = reader.pending()
            rows: list[dict[str, Any] | str] = list(records)
        else:
            found = {str(item["batch_id"]): item for item in reader.get_many(ids)}
            rows = [found.get(batch_id, batch_id) for batch_id in ids]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            raise OperationFailed(f"the table {table} does not exist") from None
        raise OperationFailed(
            f"reading {table} failed: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except BotoCoreError as exc:
        raise OperationFailed(f"reading {table} failed: {exc}") from None

    if options.json:
        print_json(
            [row if isinstance(row, dict) else {"batch_id": row, "found": False} for row in rows]
        )
    else:
        print_table(HEADERS, (_row(row) for row in rows))
        now = time.time()
        # The table says "owed: Cancelled"; what that means for each one is said below it.
        words = [line for row in rows if isinstance(row, dict) for line in explain(row, now)]
        if words:
            print_lines(["", *words])
        if options.pending and not rows:
            print_note("no batch is cancelling")
    missing = [row for row in rows if isinstance(row, str)]
    if missing:
        # A script asking about an ID must be able to tell "no record" from a record.
        print_note(
            f"no record of {', '.join(missing)}: never sent to this stack's canceller, or not"
            " handled yet"
        )
        return EXIT_FAILED
    return EXIT_OK


class RecordReader:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table
        self._sleep = sleep

    def get_many(self, batch_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Consistent reads, 100 keys per BatchGetItem, unprocessed keys asked again."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(batch_ids), KEYS_PER_BATCH_GET):
            keys = [{"batch_id": {"S": b}} for b in batch_ids[start : start + KEYS_PER_BATCH_GET]]
            request: Any = {self._table: {"Keys": keys, "ConsistentRead": True}}
            for round_number in range(MAX_UNPROCESSED_ROUNDS):
                if round_number:
                    self._sleep(min(2.0, 0.05 * 2**round_number))  # DynamoDB asks us to back off
                answer = self._client.batch_get_item(RequestItems=request)
                items.extend(
                    _plain(item) for item in answer.get("Responses", {}).get(self._table, [])
                )
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise OperationFailed(f"{self._table} kept some keys unprocessed; try again")
        return items

    def pending(self) -> list[dict[str, Any]]:
        """Every item still `cancelling`, oldest update first."""
        if self._has_status_index():
            # The index is eventually consistent: re-read the items and keep those still pending.
            ids = [str(item["batch_id"]) for item in self._query_index()]
            items = [i for i in self.get_many(ids) if i.get("status") == PENDING_STATUS]
        else:
            items = list(self._scan())
        return sorted(items, key=lambda item: str(item.get("updated_at") or ""))

    def _has_status_index(self) -> bool:
        description = self._client.describe_table(TableName=self._table)["Table"]
        for index in description.get("GlobalSecondaryIndexes", []):
            hash_keys = [k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "HASH"]
            if index["IndexName"] == STATUS_INDEX and hash_keys == ["status"]:
                return True
        return False

    def _query_index(self) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": PENDING_STATUS}},
        }
        yield from self._pages(self._client.query, request)

    def _scan(self) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "ConsistentRead": True,
            "FilterExpression": "#status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": PENDING_STATUS}},
        }
        yield from self._pages(self._client.scan, request)

    @staticmethod
    def _pages(operation: Callable[..., Any], request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            answer = operation(**request)
            for item in answer.get("Items", []):
                yield _plain(item)
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            request = {**request, "ExclusiveStartKey": last}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = plain(from_item(item))
    return value


def _validated(ids: Sequence[str]) -> list[str]:
    good: list[str] = []
    bad: list[str] = []
    for value in ids:
        try:
            good.append(validate_batch_id(value))
        except InvalidInput as exc:
            bad.append(in_flags("status", str(exc)))
    if bad:
        raise UsageError("; ".join(bad))
    return good


def _row(row: dict[str, Any] | str) -> list[object]:
    if isinstance(row, str):
        return [row, NOT_FOUND, None, None, None, None, None]
    return [
        row.get("batch_id"),
        row.get("status") or (None if row.get("updated_at") else NOT_SENT),
        row.get("updated_at"),
        shorten(str(row["reason"]), 30) if row.get("reason") else None,
        shorten(str(row["requested_by"]), 30) if row.get("requested_by") else None,
        _last_error(row.get("last_error")),
        _events(row),
    ]


def _last_error(error: object) -> str | None:
    if not isinstance(error, dict):
        return None
    text = " ".join(str(error.get(key)) for key in ("http_status", "message") if error.get(key))
    return shorten(text, 50) or None


def _events(row: dict[str, Any]) -> str | None:
    # "Batch Cancelled" -> "Cancelled": the column is about batches already. Events recorded as
    # owed (written, not yet announced) are shown too: the next delivery announces them.
    def short(names: object) -> list[str]:
        return [str(n).removeprefix("Batch ") for n in names] if isinstance(names, list) else []

    parts = short(row.get("announced_events"))
    owed = short(row.get("pending_events"))
    if owed:
        parts.append("owed: " + ", ".join(owed))
    return ", ".join(parts) or None

"""The BatchesTable: one item per batch, written so that it never moves backwards.

Besides the contract's attributes the item keeps the bookkeeping that makes events exactly-once
across crashes and redeliveries (`pending_events`, `announced_events`) and the identity of the
status-check chain that follows a `cancelling` batch (`watch_id`, `watch_since`, `poll_attempt`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batch_canceller.json_values import from_item, to_attribute
from batch_canceller.statuses import TERMINAL_RANK, DetailType, announcement_for, rank

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


# An event owed by a record is announced by the delivery that claimed it; the claim names that
# delivery (its SQS message ID, which a redelivery keeps) and lapses after Lambda's longest run,
# so a delivery that died can be taken over. Two deliveries racing never both publish.
CLAIM_PREFIX = "claim "
CLAIM_LEASE_SECONDS = 960
BATCH_GET_MAX_KEYS = 100
BATCH_GET_ATTEMPTS = 6


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    status: str | None
    batch: dict[str, Any] | None
    updated_at: str | None
    reason: str | None = None
    requested_by: str | None = None
    last_error: dict[str, Any] | None = None
    pending_events: frozenset[str] = frozenset()
    announced_events: frozenset[str] = frozenset()
    watch_id: str | None = None
    watch_since: datetime | None = None
    poll_attempt: int = 0
    # Per detail type: who is announcing it (a message's token) and until when (epoch seconds).
    claims: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any]) -> BatchRecord:
        item = from_item(attributes)
        since = item.get("watch_since")
        return cls(
            batch_id=str(item["batch_id"]),
            status=item.get("status"),
            batch=item.get("batch"),
            updated_at=item.get("updated_at"),
            reason=item.get("reason"),
            requested_by=item.get("requested_by"),
            last_error=item.get("last_error"),
            pending_events=frozenset(item.get("pending_events", ())),
            announced_events=frozenset(item.get("announced_events", ())),
            watch_id=item.get("watch_id"),
            watch_since=datetime.fromisoformat(since) if since else None,
            poll_attempt=int(item.get("poll_attempt", 0)),
            claims={
                key.removeprefix(CLAIM_PREFIX): (str(value["token"]), float(value["expires"]))
                for key, value in item.items()
                if key.startswith(CLAIM_PREFIX) and isinstance(value, dict)
            },
        )

    def claimed_by_other(self, detail_type: str, token: str, now: float) -> bool:
        """Another delivery holds an unexpired claim to announce this event."""
        claim = self.claims.get(detail_type)
        return claim is not None and claim[0] != token and claim[1] > now


@dataclass(frozen=True)
class SaveResult:
    record: BatchRecord
    # False when the stored state was already as new or newer (stale answer, duplicate).
    changed: bool


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BatchStore:
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

    def save_batch(
        self,
        batch_id: str,
        batch: dict[str, Any],
        reason: str | None = None,
        requested_by: str | None = None,
        claim_token: str | None = None,
        watch: tuple[str, datetime] | None = None,
    ) -> SaveResult:
        """Store the API's Batch object unless the item already holds the same or a later state;
        a transition that owes an event also claims announcing it for `claim_token`.

        `watch` (a `cancelling` answer): the ID of the status-check chain that will follow the
        batch, and the time to count its timeout from unless a watch already started earlier.
        Written in the same write, so following a batch costs no write of its own."""
        status = str(batch["status"])
        new_rank = rank(status)
        sets = [
            "#status = :status",
            "status_rank = :rank",
            "#batch = :batch",
            "updated_at = :now",
        ]
        values: dict[str, Any] = {
            ":status": to_attribute(status),
            ":rank": to_attribute(new_rank),
            ":batch": to_attribute(batch),
            ":now": to_attribute(iso(self._clock())),
            ":terminal": to_attribute(TERMINAL_RANK),
        }
        _set_request_fields(sets, values, reason, requested_by)
        if watch is not None:
            watch_id, since = watch
            sets += [
                "watch_id = :watch",
                "watch_since = if_not_exists(watch_since, :since)",
                "poll_attempt = :first",
            ]
            values[":watch"] = {"S": watch_id}
            values[":since"] = {"S": since.isoformat()}
            values[":first"] = {"N": "1"}
        names = {"#status": "status", "#batch": "batch"}
        announcement = announcement_for(status)
        if announcement is not None and claim_token is not None:
            sets.append("#claim = :claim")
            names["#claim"] = CLAIM_PREFIX + announcement.value
            values[":claim"] = self._claim_value(claim_token)
        expression = "SET " + ", ".join(sets) + " REMOVE last_error"
        if announcement is not None:
            # Only the first terminal write passes the condition, so this is the transition.
            expression += " ADD pending_events :announce"
            values[":announce"] = {"SS": [announcement.value]}
        return self._update(
            batch_id,
            expression,
            values,
            condition=(
                "attribute_not_exists(status_rank) OR status_rank < :rank"
                " OR (status_rank = :rank AND status_rank < :terminal)"
            ),
            names=names,
        )

    def save_error(
        self,
        batch_id: str,
        error: dict[str, Any],
        *,
        announce: bool,
        reason: str | None = None,
        requested_by: str | None = None,
        claim_token: str | None = None,
    ) -> SaveResult:
        """Record a permanent API error; `announce` queues one `Batch Cancel Failed` per batch."""
        sets = ["last_error = :error", "updated_at = :now"]
        values: dict[str, Any] = {
            ":error": to_attribute(error),
            ":now": to_attribute(iso(self._clock())),
        }
        _set_request_fields(sets, values, reason, requested_by)
        expression = "SET " + ", ".join(sets)
        if announce:
            failed = DetailType.CANCEL_FAILED.value
            claim = ", #claim = :claim" if claim_token is not None else ""
            claim_values = {":claim": self._claim_value(claim_token)} if claim_token else {}
            result = self._update(
                batch_id,
                expression + claim + " ADD pending_events :announce",
                {
                    **values,
                    **claim_values,
                    ":announce": {"SS": [failed]},
                    ":failed": {"S": failed},
                },
                condition=(
                    "NOT contains(announced_events, :failed)"
                    " AND NOT contains(pending_events, :failed)"
                ),
                names={"#claim": CLAIM_PREFIX + failed} if claim_token else None,
            )
            if result.changed:
                return result
        return self._update(batch_id, expression, values, condition=None)

    def restart_watch(self, batch_id: str, watch_id: str, since: datetime) -> None:
        """Point the item at a new status-check chain whose timeout counts from `since` (after a
        stall was announced, a new cancel request watches the batch afresh)."""
        self._client.update_item(
            TableName=self._table,
            Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET watch_id = :watch, watch_since = :since, poll_attempt = :one",
            ExpressionAttributeValues={
                ":watch": {"S": watch_id},
                ":since": {"S": since.isoformat()},
                ":one": {"N": "1"},
            },
        )

    def advance_watch(self, batch_id: str, watch_id: str, attempt: int) -> bool:
        """Record that check `attempt` of the chain was sent; False if another chain took over."""
        return self._update_if(
            batch_id,
            UpdateExpression="SET poll_attempt = :attempt",
            ConditionExpression="watch_id = :watch AND poll_attempt < :attempt",
            ExpressionAttributeValues={
                ":watch": {"S": watch_id},
                ":attempt": {"N": str(attempt)},
            },
        )

    def mark_stalled(
        self, batch_id: str, watch_id: str, claim_token: str | None = None
    ) -> SaveResult:
        stalled = DetailType.CANCEL_STALLED.value
        names = {"#status": "status"}
        claim_values: dict[str, Any] = {}
        claim = ""
        if claim_token is not None:
            claim, names["#claim"] = ", #claim = :claim", CLAIM_PREFIX + stalled
            claim_values[":claim"] = self._claim_value(claim_token)
        return self._update(
            batch_id,
            f"SET stalled_at = :now, updated_at = :now{claim} ADD pending_events :announce",
            {
                **claim_values,
                ":now": to_attribute(iso(self._clock())),
                ":announce": {"SS": [stalled]},
                ":stalled": {"S": stalled},
                ":cancelling": {"S": "cancelling"},
                ":watch": {"S": watch_id},
            },
            condition=(
                "#status = :cancelling AND watch_id = :watch"
                " AND NOT contains(announced_events, :stalled)"
                " AND NOT contains(pending_events, :stalled)"
            ),
            names=names,
        )

    def claim(self, batch_id: str, detail_type: str, token: str) -> bool:
        """Claim announcing an owed event: free, lapsed, or already this delivery's."""
        return self._update_if(
            batch_id,
            UpdateExpression="SET #claim = :claim",
            ConditionExpression=(
                "contains(pending_events, :type) AND (attribute_not_exists(#claim)"
                " OR #claim.#token = :token OR #claim.#expires < :now)"
            ),
            ExpressionAttributeNames={
                "#claim": CLAIM_PREFIX + detail_type,
                "#token": "token",
                "#expires": "expires",
            },
            ExpressionAttributeValues={
                ":claim": self._claim_value(token),
                ":type": {"S": detail_type},
                ":token": {"S": token},
                ":now": {"N": str(int(self._clock().timestamp()))},
            },
        )

    def release_claim(self, batch_id: str, detail_type: str, token: str) -> None:
        """Give up a claim this delivery holds (its PutEvents was refused)."""
        self._update_if(
            batch_id,
            UpdateExpression="REMOVE #claim",
            ConditionExpression="#claim.#token = :token",
            ExpressionAttributeNames={"#claim": CLAIM_PREFIX + detail_type, "#token": "token"},
            ExpressionAttributeValues={":token": {"S": token}},
        )

    def _claim_value(self, token: str) -> dict[str, Any]:
        # Milliseconds: a redelivery tells its own claim from its earlier attempt's by the time.
        expires = round(self._clock().timestamp() + CLAIM_LEASE_SECONDS, 3)
        return {"M": {"token": {"S": token}, "expires": {"N": f"{expires:.3f}"}}}

    def pending_events_of(self, batch_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """The events each batch still owes (batches without an item are left out)."""
        pending: dict[str, frozenset[str]] = {}
        unique = list(dict.fromkeys(batch_ids))
        for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [
                        {"batch_id": {"S": b}} for b in unique[start : start + BATCH_GET_MAX_KEYS]
                    ],
                    "ProjectionExpression": "batch_id, pending_events",
                    "ConsistentRead": True,
                }
            }
            for attempt in range(BATCH_GET_ATTEMPTS):
                answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    pending[item["batch_id"]["S"]] = frozenset(
                        item.get("pending_events", {}).get("SS", ())
                    )
                request = dict(answer.get("UnprocessedKeys") or {})
                if not request:
                    break
                # Throttled keys come back unprocessed; back off before asking again.
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(
                    f"BatchGetItem left keys unprocessed after {BATCH_GET_ATTEMPTS} tries"
                )
        return pending

    def mark_announced(self, batch_id: str, detail_type: str) -> None:
        self._update_if(
            batch_id,
            UpdateExpression="DELETE pending_events :event ADD announced_events :event REMOVE #claim",
            ConditionExpression="contains(pending_events, :type)",
            ExpressionAttributeNames={"#claim": CLAIM_PREFIX + detail_type},
            ExpressionAttributeValues={
                ":event": {"SS": [detail_type]},
                ":type": {"S": detail_type},
            },
        )

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
    ) -> SaveResult:
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
        return SaveResult(BatchRecord.from_attributes(answer["Attributes"]), changed=True)


def _set_request_fields(
    sets: list[str], values: dict[str, Any], reason: str | None, requested_by: str | None
) -> None:
    """Adds the command's reason and requester to an update, when the command gave them."""
    for name, value in (("reason", reason), ("requested_by", requested_by)):
        if value is not None:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = to_attribute(value)


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"

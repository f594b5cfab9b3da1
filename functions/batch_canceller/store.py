"""The record's writes to the BatchesTable: never moving backwards, each a conditional UpdateItem
whose condition is the protocol's (docs/exactly-once.md). A transition that owes an event claims
it for the writing delivery in the same write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batch_canceller.announce_protocol import Claim
from batch_canceller.event_ledger import set_claim
from batch_canceller.item_table import ItemTable
from batch_canceller.json_values import to_attribute
from batch_canceller.records import SaveResult, Watch, iso
from batch_canceller.statuses import TERMINAL_RANK, DetailType, announcement_for, rank

# An event is owed once: not while it is owed, and never after it was announced.
NOT_YET_OWED = "NOT contains(announced_events, :type) AND NOT contains(pending_events, :type)"
# A stall is owed once per watch: not while a stall is owed; and once one was announced, only
# for another watch than the one it was about. Records from before `stalled_watch` kept one
# stall per batch: theirs was about the current watch if it was marked after that watch began
# (`stalled_at` is written as iso(), `watch_since` as isoformat(): the same UTC prefix to the
# second, and a stall comes at least POLL_TIMEOUT_SECONDS >= 1 s after its watch began).
STALL_NOT_YET_OWED = (
    "NOT contains(pending_events, :type) AND (NOT contains(announced_events, :type)"
    " OR (attribute_exists(stalled_watch) AND stalled_watch <> :watch)"
    " OR (attribute_not_exists(stalled_watch) AND stalled_at < watch_since))"
)
# Present while the record needs following through: a chain follows it, or it owes an event.
# The reconciler's sparse index (FOLLOW_THROUGH_INDEX) holds exactly these records.
FOLLOW_THROUGH = "follow_through = :open"
OPEN = {"S": "open"}


class BatchStore(ItemTable):
    """The record's writes: the API's answers, permanent errors, stalls, the check chain."""

    # -- transitions: each may make one event owed, claimed by the writing delivery ----------

    def save_batch(
        self,
        batch_id: str,
        batch: dict[str, Any],
        reason: str | None = None,
        requested_by: str | None = None,
        claim: Claim | None = None,
        watch: Watch | None = None,
        webhook_event: str | None = None,
    ) -> SaveResult:
        """Store the API's Batch object unless the item already holds the same or a later state.
        The first terminal status owes its event and claims it for `claim`; `watch` (with a
        non-terminal answer: `cancelling`, or a gateway's `in_progress` before the cancel took
        effect) starts a status-check chain in the same write, unless one already follows the
        batch (then that one goes on). `webhook_event`: the write refreshes the batch for that
        webhook event, recorded so that a replay of it makes no second GET or write."""
        status = str(batch["status"])
        new_rank = rank(status)
        sets = ["#status = :status", "status_rank = :rank", "#batch = :batch", "updated_at = :now"]
        values: dict[str, Any] = {
            ":status": to_attribute(status),
            ":rank": to_attribute(new_rank),
            ":batch": to_attribute(batch),
            ":now": to_attribute(iso(self._clock())),
            ":terminal": to_attribute(TERMINAL_RANK),
        }
        _set_request_fields(sets, values, reason, requested_by)
        if watch is not None:
            sets += [
                "watch_id = if_not_exists(watch_id, :watch)",
                "watch_since = if_not_exists(watch_since, :since)",
                "poll_attempt = if_not_exists(poll_attempt, :none_yet)",
                "poll_advanced_at = if_not_exists(poll_advanced_at, :advanced)",
                FOLLOW_THROUGH,
            ]
            values[":watch"] = {"S": watch.watch_id}
            values[":since"] = {"S": watch.since.isoformat()}
            values[":none_yet"] = {"N": "0"}
            values[":advanced"] = _epoch(watch.since)
            values[":open"] = OPEN
        names = {"#status": "status", "#batch": "batch"}
        announcement = announcement_for(status)
        adds = []
        if announcement is not None:
            # Only the first terminal write passes the condition, so this is the transition.
            adds.append("pending_events :announce")
            values[":announce"] = {"SS": [announcement.value]}
            sets.append(FOLLOW_THROUGH)
            values[":open"] = OPEN
            set_claim(sets, values, names, announcement.value, claim)
        if webhook_event is not None:
            adds.append("webhook_events :webhook")
            values[":webhook"] = {"SS": [webhook_event]}
            if announcement is not None:
                sets.append("ended_by = :ended_by")
                values[":ended_by"] = {"S": "webhook"}
        return self._update(
            batch_id,
            "SET "
            + ", ".join(sets)
            + " REMOVE last_error"
            + (" ADD " + ", ".join(adds) if adds else ""),
            values,
            condition=(
                "attribute_not_exists(status_rank) OR status_rank < :rank"
                " OR (status_rank = :rank AND status_rank < :terminal)"
            ),
            names=names,
            claims=announcement.value if announcement is not None and claim else None,
        )

    def save_error(
        self,
        batch_id: str,
        error: dict[str, Any],
        *,
        announce: bool,
        reason: str | None = None,
        requested_by: str | None = None,
        claim: Claim | None = None,
    ) -> SaveResult:
        """Record a permanent API error; `announce` owes one `Batch Cancel Failed` per batch."""
        sets = ["last_error = :error", "updated_at = :now"]
        values: dict[str, Any] = {
            ":error": to_attribute(error),
            ":now": to_attribute(iso(self._clock())),
        }
        _set_request_fields(sets, values, reason, requested_by)
        if announce:
            failed = DetailType.CANCEL_FAILED.value
            owing_sets, owing_values = list(sets), dict(values)
            names: dict[str, str] = {}
            owing_values[":announce"] = {"SS": [failed]}
            owing_values[":type"] = {"S": failed}
            owing_values[":open"] = OPEN
            owing_sets.append(FOLLOW_THROUGH)
            set_claim(owing_sets, owing_values, names, failed, claim)
            result = self._update(
                batch_id,
                "SET " + ", ".join(owing_sets) + " ADD pending_events :announce",
                owing_values,
                condition=NOT_YET_OWED,
                names=names,
                claims=failed if claim else None,
            )
            if result.changed:
                return result
        return self._update(batch_id, "SET " + ", ".join(sets), values, condition=None)

    def mark_stalled(self, batch_id: str, watch_id: str, claim: Claim | None = None) -> SaveResult:
        """The chain `watch_id` timed out while the batch is not terminal: owe its stall. A
        watch started after an earlier one stalled owes a stall of its own (STALL_NOT_YET_OWED)."""
        stalled = DetailType.CANCEL_STALLED.value
        sets = ["stalled_at = :now", "updated_at = :now", "stalled_watch = :watch", FOLLOW_THROUGH]
        names: dict[str, str] = {}
        values: dict[str, Any] = {
            ":now": to_attribute(iso(self._clock())),
            ":announce": {"SS": [stalled]},
            ":type": {"S": stalled},
            ":terminal": to_attribute(TERMINAL_RANK),
            ":watch": {"S": watch_id},
            ":open": OPEN,
        }
        set_claim(sets, values, names, stalled, claim)
        return self._update(
            batch_id,
            "SET " + ", ".join(sets) + " DELETE announced_events :announce"
            " ADD pending_events :announce",
            values,
            condition=f"status_rank < :terminal AND watch_id = :watch AND {STALL_NOT_YET_OWED}",
            names=names,
            claims=stalled if claim else None,
        )

    # -- the status-check chain ----------------------------------------------------------

    def start_watch(self, batch_id: str, watch: Watch, replacing: str | None) -> SaveResult:
        """Start a new chain in place of `replacing` (a chain that timed out, or None: no chain
        yet). Conditional on that, so of several deliveries doing it at once one starts it;
        the record it returns names the chain that follows the batch either way."""
        condition = "attribute_not_exists(watch_id)" if replacing is None else "watch_id = :old"
        values: dict[str, Any] = {
            ":watch": {"S": watch.watch_id},
            ":since": {"S": watch.since.isoformat()},
            ":none_yet": {"N": "0"},
            ":advanced": _epoch(watch.since),
            ":open": OPEN,
        }
        if replacing is not None:
            values[":old"] = {"S": replacing}
        return self._update(
            batch_id,
            "SET watch_id = :watch, watch_since = :since, poll_attempt = :none_yet,"
            f" poll_advanced_at = :advanced, {FOLLOW_THROUGH} REMOVE poll_step",
            values,
            condition=condition,
        )

    def take_step(self, batch_id: str, watch_id: str, attempt: int, step: str) -> SaveResult:
        """Make check `attempt` (token `step`) the chain's current step: the arriving check
        takes the step after the one the record holds; only one token wins it (`changed`).
        A batch that became terminal meanwhile has no step to take: its chain has ended."""
        return self._update(
            batch_id,
            "SET poll_attempt = :attempt, poll_step = :step, poll_advanced_at = :advanced,"
            f" {FOLLOW_THROUGH}",
            {
                ":watch": {"S": watch_id},
                ":attempt": {"N": str(attempt)},
                ":previous": {"N": str(attempt - 1)},
                ":step": {"S": step},
                ":advanced": _epoch(self._clock()),
                ":terminal": to_attribute(TERMINAL_RANK),
                ":open": OPEN,
            },
            condition="watch_id = :watch AND poll_attempt = :previous AND status_rank < :terminal",
        )

    def settle(self, batch_id: str, watch_id: str | None) -> bool:
        """Take a record that needs no more following through out of the reconciler's index:
        nothing owed, and the batch terminal or its watch `watch_id` stalled (conditional, so a
        record that moved on since it was read keeps its place)."""
        values: dict[str, Any] = {":terminal": to_attribute(TERMINAL_RANK)}
        condition = "attribute_not_exists(pending_events) AND (status_rank = :terminal"
        if watch_id is not None:
            condition += " OR (watch_id = :watch AND stalled_watch = :watch)"
            values[":watch"] = {"S": watch_id}
        return self._update_if(
            batch_id,
            UpdateExpression="REMOVE follow_through",
            ConditionExpression=condition + ")",
            ExpressionAttributeValues=values,
        )


def _epoch(moment: datetime) -> dict[str, str]:
    return {"N": f"{moment.timestamp():.3f}"}


def _set_request_fields(
    sets: list[str], values: dict[str, Any], reason: str | None, requested_by: str | None
) -> None:
    """Adds the command's reason and requester to an update, when the command gave them."""
    for name, value in (("reason", reason), ("requested_by", requested_by)):
        if value is not None:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = to_attribute(value)

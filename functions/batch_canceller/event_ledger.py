"""The event ledger's writes (docs/exactly-once.md): claim an owed event, release a claim,
mark an event announced; and the read that receipts need."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batch_canceller.announce_protocol import Claim
from batch_canceller.item_table import ItemTable
from batch_canceller.records import CLAIM_PREFIX, BatchRecord
from batch_canceller.statuses import TERMINAL_RANK


class EventLedger(ItemTable):
    def claim(self, batch_id: str, detail_type: str, claim: Claim) -> BatchRecord | None:
        """Claim an owed event that is free or whose lease has ended. None: this write won;
        otherwise the record as it was when it lost."""
        names = {"#claim": CLAIM_PREFIX + detail_type, "#expires": "expires"}
        values: dict[str, Any] = {
            ":type": {"S": detail_type},
            ":now": {"N": f"{self._clock().timestamp():.3f}"},
        }
        sets: list[str] = []
        set_claim(sets, values, names, detail_type, claim)
        return self._update_or_current(
            batch_id,
            "SET " + ", ".join(sets),
            values,
            condition=(
                "contains(pending_events, :type)"
                " AND (attribute_not_exists(#claim) OR #claim.#expires <= :now)"
            ),
            names=names,
        )

    def release_claim(self, batch_id: str, detail_type: str, token: str) -> bool:
        """Give up a claim this delivery holds: the bus refused the event, so it is unpublished."""
        return self._update_if(
            batch_id,
            UpdateExpression="REMOVE #claim",
            ConditionExpression="#claim.#token = :token",
            ExpressionAttributeNames={"#claim": CLAIM_PREFIX + detail_type, "#token": "token"},
            ExpressionAttributeValues={":token": {"S": token}},
        )

    def mark_announced(
        self, batch_id: str, detail_type: str, claimed_by: str | None = None
    ) -> bool:
        """The event was published (its PutEvents was accepted, or its receipt came). When it
        was the last thing the record needed following through for (nothing else owed, and the
        batch terminal or its watch stalled), the same write takes the record out of the
        reconciler's index; otherwise a second, plain write marks it. With `claimed_by` (a
        receipt's publication ID), only while the event's claim is still that publication's."""
        names = {"#claim": CLAIM_PREFIX + detail_type}
        values: dict[str, Any] = {
            ":event": {"SS": [detail_type]},
            ":type": {"S": detail_type},
        }
        owed = "contains(pending_events, :type)"
        if claimed_by is not None:
            names["#token"] = "token"
            values[":token"] = {"S": claimed_by}
            owed += " AND #claim.#token = :token"
        # The usual mark (the batch's one event): the item is needed only if this fails.
        unsettled = self._update_or_current(
            batch_id,
            "DELETE pending_events :event ADD announced_events :event"
            " REMOVE #claim, follow_through",
            {**values, ":one": {"N": "1"}, ":terminal": {"N": str(TERMINAL_RANK)}},
            condition=(
                f"{owed} AND size(pending_events) = :one"
                " AND (status_rank = :terminal OR stalled_watch = watch_id)"
            ),
            names=names,
        )
        if unsettled is None:
            return True
        if detail_type not in unsettled.pending_events:
            return False
        marked = self._update(
            batch_id,
            "DELETE pending_events :event ADD announced_events :event REMOVE #claim",
            values,
            condition=owed,
            names=names,
        )
        after = marked.record
        if marked.changed and not after.pending_events and after.chain_ended:
            # Two marks of one record at once both found another event owed, so neither took
            # it out of the index; the last one does, as the settling write would have.
            self._update_if(
                batch_id,
                UpdateExpression="REMOVE follow_through",
                ConditionExpression="attribute_not_exists(pending_events)",
            )
        return marked.changed

    def owed_claims_of(self, batch_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """For each batch, the events it still owes and the token of each one's claim (None:
        unclaimed); batches without an item are left out."""
        return {
            record.batch_id: {
                detail_type: claim.token if (claim := record.claims.get(detail_type)) else None
                for detail_type in record.pending_events
            }
            for record in map(BatchRecord.from_attributes, self._batch_get(batch_ids))
        }


def set_claim(
    sets: list[str],
    values: dict[str, Any],
    names: dict[str, str],
    detail_type: str,
    claim: Claim | None,
) -> None:
    """Adds `claim <detail type>` = the delivery's token and lease to an update."""
    if claim is None:
        return
    names["#claim"] = CLAIM_PREFIX + detail_type
    sets.append("#claim = :claim")
    values[":claim"] = {
        "M": {"token": {"S": claim.token}, "expires": {"N": f"{claim.expires:.3f}"}}
    }

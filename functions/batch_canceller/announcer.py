"""Follow-up events on the bus: built from the stored record, sent ten to a PutEvents call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.concurrency import MapFn
from batch_canceller.json_values import dumps
from batch_canceller.records import BatchRecord
from batch_canceller.statuses import DetailType

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

PUT_EVENTS_MAX_ENTRIES = 10
# PutEvents caps a request at 256 KiB; keep well below it with headroom for the envelope.
PUT_EVENTS_MAX_BYTES = 200 * 1024


@dataclass(frozen=True)
class Announcement:
    batch_id: str
    detail_type: str
    detail: dict[str, Any]


def announcement_from(record: BatchRecord, detail_type: str) -> Announcement:
    detail: dict[str, Any]
    if detail_type == DetailType.CANCEL_FAILED:
        detail = {"batch_id": record.batch_id, "error": record.last_error}
    else:
        detail = {
            "batch_id": record.batch_id,
            "status": record.status,
            "batch": record.batch,
            "reason": record.reason,
            "requested_by": record.requested_by,
        }
    return Announcement(record.batch_id, detail_type, detail)


class EventPublisher:
    def __init__(self, client: EventBridgeClient, bus_name: str, source: str) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source

    def publish(
        self,
        announcements: list[Announcement],
        map_fn: MapFn = map,
        settle: Callable[[list[Announcement], list[bool]], None] | None = None,
    ) -> list[bool]:
        """Send every announcement; the result says, per announcement, whether it was accepted.
        `map_fn` (an executor's map) sends the PutEvents calls concurrently; `settle` runs right
        after each call with its announcements and their outcome, so what was published is
        recorded as soon as possible."""
        chunks = _chunks([self._entry(a) for a in announcements])
        starts = [sum(len(chunk) for chunk in chunks[:index]) for index in range(len(chunks))]

        def send(start: int, chunk: list[dict[str, Any]]) -> list[bool]:
            accepted = self._put(chunk)
            if settle is not None:
                settle(announcements[start : start + len(chunk)], accepted)
            return accepted

        return [ok for results in map_fn(send, starts, chunks) for ok in results]

    def put_detail(self, detail_type: str, detail: dict[str, Any]) -> bool:
        return self._put([self._entry(Announcement("", detail_type, detail))])[0]

    def _entry(self, announcement: Announcement) -> dict[str, Any]:
        return {
            "Source": self._source,
            "DetailType": announcement.detail_type,
            "Detail": dumps(announcement.detail),
            "EventBusName": self._bus,
        }

    def _put(self, entries: list[dict[str, Any]]) -> list[bool]:
        try:
            answer = self._client.put_events(Entries=entries)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError):
            return [False] * len(entries)
        results = answer.get("Entries", [])
        if len(results) != len(entries):
            return [False] * len(entries)
        # An entry without an EventId (and with an ErrorCode) was not delivered.
        return [bool(result.get("EventId")) and not result.get("ErrorCode") for result in results]


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["Detail"].encode()) + len(entry["DetailType"]) + 200
        if current and (
            len(current) == PUT_EVENTS_MAX_ENTRIES or size + entry_size > PUT_EVENTS_MAX_BYTES
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks

"""Follow-up events on the bus: built from the stored record, sent ten to a PutEvents call, and
each entry's outcome told apart: published, refused, or not known."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from batch_canceller.announce_protocol import PutOutcome
from batch_canceller.deadline import FINISH_SECONDS, Deadline
from batch_canceller.json_values import dumps
from batch_canceller.records import BatchRecord
from batch_canceller.statuses import DetailType

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

PUT_EVENTS_MAX_ENTRIES = 10
# PutEvents caps a request at 256 KiB; keep well below it with headroom for the envelope.
PUT_EVENTS_MAX_BYTES = 200 * 1024
# A summary event (not exactly-once: a repeat is harmless) is worth a few tries.
SUMMARY_ATTEMPTS = 3
# The EventBridge client's timeouts (service.events_config), and so the longest one PutEvents.
EVENTS_CONNECT_SECONDS = 1
EVENTS_READ_SECONDS = 3
EVENTS_CALL_SECONDS = EVENTS_CONNECT_SECONDS + EVENTS_READ_SECONDS


@dataclass(frozen=True)
class Announcement:
    batch_id: str
    detail_type: str
    detail: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.batch_id, self.detail_type)

    @cached_property
    def detail_json(self) -> str:
        """The event's Detail, written once: sizing the chunks and sending them both need it."""
        return dumps(self.detail)


def announcement_from(record: BatchRecord, detail_type: str, publication_id: str) -> Announcement:
    """The event an owed entry of the record becomes, published under the claim whose token is
    `publication_id`: its receipt must bring that token back to mark the event announced."""
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
    detail["publication_id"] = publication_id
    return Announcement(record.batch_id, detail_type, detail)


class EventPublisher:
    """PutEvents with one attempt per call (the client is built with `total_max_attempts=1`):
    an SDK retry of a request that was accepted but answered late would publish twice."""

    def __init__(self, client: EventBridgeClient, bus_name: str, source: str) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source

    def chunked(self, announcements: Sequence[Announcement]) -> list[list[Announcement]]:
        """Groups of announcements that each fit one PutEvents request."""
        chunks, start = [], 0
        for chunk in _chunks([self._entry(a) for a in announcements]):
            chunks.append(list(announcements[start : start + len(chunk)]))
            start += len(chunk)
        return chunks

    def put(self, chunk: Sequence[Announcement]) -> list[PutOutcome]:
        """One PutEvents request; per announcement, what became of it."""
        entries = [self._entry(a) for a in chunk]
        try:
            answer = self._client.put_events(Entries=entries)  # type: ignore[arg-type]
        except (ConnectTimeoutError, EndpointConnectionError):
            return [PutOutcome.REFUSED] * len(entries)  # no connection: nothing was sent
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            # A 4xx (validation, throttling, access) was refused; a 5xx may have published.
            refused = isinstance(status, int) and status < 500
            return [PutOutcome.REFUSED if refused else PutOutcome.UNKNOWN] * len(entries)
        except BotoCoreError:
            return [PutOutcome.UNKNOWN] * len(entries)  # timed out or dropped: maybe published
        results = answer.get("Entries", [])
        if len(results) != len(entries):
            return [PutOutcome.UNKNOWN] * len(entries)
        return [_entry_outcome(result) for result in results]

    def put_detail(self, detail_type: str, detail: dict[str, Any], deadline: Deadline) -> bool:
        """A one-off event outside the ledger (a sweep's summary), tried a few times while the
        invocation has time for it."""
        announcement = Announcement("", detail_type, detail)
        for _ in range(SUMMARY_ATTEMPTS):
            if not deadline.leaves(FINISH_SECONDS + EVENTS_CALL_SECONDS):
                return False
            if self.put([announcement]) == [PutOutcome.ACCEPTED]:
                return True
        return False

    def _entry(self, announcement: Announcement) -> dict[str, Any]:
        return {
            "Source": self._source,
            "DetailType": announcement.detail_type,
            "Detail": announcement.detail_json,
            "EventBusName": self._bus,
        }


def _entry_outcome(result: Mapping[str, Any]) -> PutOutcome:
    # An entry with an ErrorCode was not ingested; one with an EventId was.
    if result.get("ErrorCode"):
        return PutOutcome.REFUSED
    return PutOutcome.ACCEPTED if result.get("EventId") else PutOutcome.UNKNOWN


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

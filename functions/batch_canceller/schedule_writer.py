"""Writes one batch's schedule whatever is there already: create it, or update it in place.

A batch has one schedule, named from its ID alone, so nothing has to be listed: a later
`cancel_at` for the same batch finds the name taken (ConflictException) and updates the
schedule to the new time; a schedule that fired meanwhile has deleted itself
(ResourceNotFoundException on the update) and is created again. Two writers at once: the one
whose call lands last wins.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

# One attempt per call, with short timeouts: a slow call then ends within CALL_SECONDS, so
# a cut-off taken that long before the deadline holds; an ID whose call failed goes on with
# the rest of its command instead of being retried here.
CONNECT_SECONDS = 2.0
READ_SECONDS = 3.0
CALL_SECONDS = CONNECT_SECONDS + READ_SECONDS
SCHEDULER_CALLS = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_SECONDS,
    read_timeout=READ_SECONDS,
)
# create; update (the name is taken); create (it fired and deleted itself in between)
MAX_CALLS = 3

_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "ServiceQuotaExceededException",  # schedules per account: frees up as schedules fire
        "InternalServerException",
        "ServiceUnavailableException",
    }
)
_CONFIGURATION_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)


class Written(enum.Enum):
    SCHEDULED = "scheduled"  # created, or updated to this command
    NOT_STARTED = "not_started"  # out of time (or stopped): goes on with the rest
    TRANSIENT = "transient"  # throttled, 5xx, timeout: goes on with the rest
    REJECTED = "rejected"  # a permanent answer for this ID (ValidationException, ...)
    CONFIGURATION = "configuration"  # the role or the group is wrong: no ID can be scheduled


class ScheduleError(enum.Enum):
    """What a Scheduler error means for one schedule (also for deleting one: pending_schedules)."""

    EXISTS = "exists"
    GONE = "gone"
    TRANSIENT = "transient"
    CONFIGURATION = "configuration"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class WriteResult:
    batch_id: str
    written: Written
    reason: str | None = None


def classify(exc: ClientError | BotoCoreError) -> tuple[ScheduleError, str]:
    if isinstance(exc, BotoCoreError):
        return ScheduleError.TRANSIENT, type(exc).__name__  # timeouts, connection errors
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    reason = f"{code}: {str(error.get('Message', ''))[:200]}"
    if code == "ConflictException":
        return ScheduleError.EXISTS, reason
    if code == "ResourceNotFoundException":
        return ScheduleError.GONE, reason
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return ScheduleError.TRANSIENT, reason
    if code in _CONFIGURATION_CODES or status in (401, 403):
        return ScheduleError.CONFIGURATION, reason
    return ScheduleError.PERMANENT, reason


def write_schedule(
    client: EventBridgeSchedulerClient,
    batch_id: str,
    definition: dict[str, Any],
    may_call: Callable[[], bool],
) -> WriteResult:
    """Creates or updates the schedule `definition` (CreateSchedule's and UpdateSchedule's
    parameters, which are the same); `may_call()` is asked before each call."""
    create = True
    for _ in range(MAX_CALLS):
        if not may_call():
            return WriteResult(batch_id, Written.NOT_STARTED)
        try:
            if create:
                client.create_schedule(**definition)
            else:
                # Every field is sent: UpdateSchedule resets what it is not given.
                client.update_schedule(**definition)
            return WriteResult(batch_id, Written.SCHEDULED)
        except (ClientError, BotoCoreError) as exc:
            kind, reason = classify(exc)
        if kind is ScheduleError.EXISTS and create:
            create = False  # an earlier command's schedule (or this one's): now this time
        elif kind is ScheduleError.GONE and not create:
            create = True  # it fired and deleted itself since the create
        elif kind is ScheduleError.GONE:
            return WriteResult(batch_id, Written.CONFIGURATION, reason)  # no such group
        elif kind is ScheduleError.PERMANENT:
            return WriteResult(batch_id, Written.REJECTED, reason)
        elif kind is ScheduleError.CONFIGURATION:
            return WriteResult(batch_id, Written.CONFIGURATION, reason)
        else:
            # A conflict on the update is another writer's update in flight: try later too.
            return WriteResult(batch_id, Written.TRANSIENT, reason)
    # Created and deleted under it each time (racing writers and firings): later.
    return WriteResult(batch_id, Written.TRANSIENT, "the schedule kept changing")

"""`schedules`: the one-time cancellation schedules (`cancel_at`) waiting in the schedule group."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.commands import InvalidInput, validate_batch_id
from batch_canceller.pending_schedules import ScheduleNotes
from batch_canceller.scheduling import NAME_PREFIX, legacy_name_prefix, schedule_name
from infra.cli import EXIT_FAILED, EXIT_OK, OperationFailed, UsageError
from infra.cli.flags import in_flags
from infra.cli.output import (
    print_error,
    print_json,
    print_lines,
    print_note,
    print_table,
    print_warning,
    shorten,
)
from infra.cli.target import Target

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

_AT = re.compile(r"at\((?P<when>[0-9T:-]+)\)")


@dataclass(frozen=True)
class Schedule:
    name: str
    when: str | None
    state: str | None
    batch_ids: list[str] = field(default_factory=list)
    reason: str | None = None
    requested_by: str | None = None
    expression: str | None = None


def group_name(target: Target) -> str:
    # The local stack may lack the output; the function's own setting names the same group.
    environment = target.function_environment or {}
    if not target.optional_output("ScheduleGroupName") and environment.get("SCHEDULE_GROUP_NAME"):
        return environment["SCHEDULE_GROUP_NAME"]
    return target.output("ScheduleGroupName")


def run_list(target: Target, *, as_json: bool) -> int:
    group = group_name(target)
    try:
        found = list_schedules(target.scheduler(), group)
    except (ClientError, BotoCoreError) as exc:
        raise OperationFailed(f"listing schedules in group {group} failed: {exc}") from None
    if as_json:
        print_json([asdict(schedule) for schedule in found])
        return EXIT_OK
    print_table(
        ("name", "when", "batch_ids", "reason", "state"),
        (
            [
                s.name,
                s.when,
                shorten(", ".join(s.batch_ids), 60),
                shorten(s.reason, 40) if s.reason else None,
                s.state,
            ]
            for s in found
        ),
    )
    if not found:
        print_note(f"no cancellation is scheduled in group {group}")
    return EXIT_OK


def run_delete(
    target: Target, names: Sequence[str], batch_ids: Sequence[str], *, as_json: bool
) -> int:
    if not names and not batch_ids:
        raise UsageError("name the schedules to delete, or pass --batch ID")
    for batch_id in batch_ids:
        try:
            validate_batch_id(batch_id)
        except InvalidInput as exc:
            raise UsageError(in_flags("schedules delete", str(exc))) from None
    group = group_name(target)
    client = target.scheduler()
    deleted: list[str] = []
    missing: list[str] = []
    # (batch ID, schedule name): the records' notes of schedules that no longer wait.
    notes: list[tuple[str, str]] = []
    try:
        for name in names:
            ids = _batch_ids_of(client, group, name)
            if ids is not None and _delete(client, group, name):
                deleted.append(name)
                notes.extend((batch_id, name) for batch_id in ids)
            else:
                missing.append(name)
        for batch_id in batch_ids:
            # The batch's one schedule, and any a version before issue 11 named per time.
            legacy = _names_with_prefix(client, group, legacy_name_prefix(batch_id))
            matching = [schedule_name(batch_id), *legacy]
            gone = [name for name in matching if _delete(client, group, name)]
            deleted.extend(gone)
            # Also when none was found: a note left by a schedule that fired is wrong too.
            notes.append((batch_id, schedule_name(batch_id)))
            if not gone:
                missing.append(f"batch {batch_id}")
    except (ClientError, BotoCoreError) as exc:
        raise OperationFailed(f"deleting schedules in group {group} failed: {exc}") from None
    _forget_notes(target, notes)
    if as_json:
        print_json({"group": group, "deleted": deleted, "not_found": missing})
    else:
        print_lines(f"deleted {name}" for name in deleted)
    for what in missing:
        print_error(f"no cancellation schedule for {what} in group {group}")
    return EXIT_FAILED if missing else EXIT_OK


def _batch_ids_of(client: EventBridgeSchedulerClient, group: str, name: str) -> list[str] | None:
    """The batches a schedule cancels (from its Input); None when there is no such schedule."""
    try:
        return _schedule(client.get_schedule(Name=name, GroupName=group)).batch_ids
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise


def _forget_notes(target: Target, notes: Sequence[tuple[str, str]]) -> None:
    """Remove each record's `cancel_schedule` note, if it names the schedule deleted (one
    written since names another), so `status` no longer says a schedule waits."""
    if not notes:
        return
    records = ScheduleNotes(target.dynamodb(), target.output("BatchesTableName"))
    for batch_id, name in notes:
        try:
            records.forget(batch_id, name)
        except (ClientError, BotoCoreError) as exc:
            print_warning(
                f"the record of {batch_id} still notes schedule {name} (`status` says it"
                f" waits until the batch is terminal): {exc}"
            )


def list_schedules(client: EventBridgeSchedulerClient, group: str) -> list[Schedule]:
    found = []
    for name in _names_with_prefix(client, group, NAME_PREFIX):
        try:
            detail = client.get_schedule(Name=name, GroupName=group)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                continue  # fired (and deleted itself) between the listing and now
            raise
        found.append(_schedule(detail))
    return sorted(found, key=lambda s: (s.when or "", s.name))


def _names_with_prefix(client: EventBridgeSchedulerClient, group: str, prefix: str) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("list_schedules").paginate(GroupName=group, NamePrefix=prefix):
        names.extend(s["Name"] for s in page.get("Schedules", []) if "Name" in s)
    return names


def _delete(client: EventBridgeSchedulerClient, group: str, name: str) -> bool:
    try:
        client.delete_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def _schedule(detail: Any) -> Schedule:
    target = detail.get("Target") or {}
    try:
        command = json.loads(target.get("Input") or "{}")
    except ValueError:
        command = {}
    if not isinstance(command, dict):
        command = {}
    ids = command.get("batch_ids")
    if ids is None and command.get("batch_id") is not None:
        ids = [command["batch_id"]]
    expression = detail.get("ScheduleExpression")
    return Schedule(
        name=str(detail.get("Name")),
        when=_when(expression, detail.get("ScheduleExpressionTimezone") or "UTC"),
        state=detail.get("State"),
        batch_ids=[str(i) for i in ids] if isinstance(ids, list) else [],
        reason=command.get("reason"),
        requested_by=command.get("requested_by"),
        expression=expression,
    )


def _when(expression: str | None, timezone: str) -> str | None:
    """`at(2026-01-01T06:00:00)` in its timezone -> ISO-8601 with the offset."""
    match = _AT.fullmatch(expression or "")
    if match is None:
        return None
    try:
        return datetime.fromisoformat(match["when"]).replace(tzinfo=ZoneInfo(timezone)).isoformat()
    except (ValueError, ZoneInfoNotFoundError):
        return f"{match['when']} {timezone}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

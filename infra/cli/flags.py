"""The one place that turns the function's field paths into the flags the user typed.

The CLI checks what it sends with the function's own parsers, whose errors name payload
fields (`'sweep.max_cancels' must be ...`, `'cancel_at' needs a UTC offset`); the user wrote
`--max-cancels` or `--at`. Each command maps the fields it fills to the flag (or argument)
that fills them."""

from __future__ import annotations

import re
from typing import Any

from batch_canceller.commands import InvalidInput, parse_payload
from infra.cli import UsageError

# command -> payload field (the path's first name after the command's own object) -> flag
FLAGS: dict[str, dict[str, str]] = {
    "send": {
        "batch_id": "ID",
        "batch_ids": "ID",
        "reason": "--reason",
        "requested_by": "--requested-by",
        "cancel_at": "--at",
    },
    "status": {"batch_id": "ID"},
    "schedules delete": {"batch_id": "--batch"},
    "sweep": {
        "older_than_minutes": "--older-than",
        "metadata": "--metadata",
        "endpoint": "--endpoint",
        "model": "--model",
        "statuses": "--status",
        "max_cancels": "--max-cancels",
        "requested_by": "--requested-by",
        "all": "--all",
        "dry_run": "--dry-run",
    },
}
# A quoted path: 'sweep.max_cancels', 'sweep.statuses[0]', 'cancel_at', 'batch_ids[3]',
# 'sweep.metadata['key']' (a key is quoted inside the path).
_PATH = re.compile(r"'(?:sweep\.)?(?P<field>[a-z_]+)(?:\.\w+|\[\d+\]|\['[^']*'\])*'")


def in_flags(command: str, message: str) -> str:
    """`message` with every quoted field path of `command` replaced by its flag."""
    flags = FLAGS[command]

    def flag(match: re.Match[str]) -> str:
        return flags.get(match["field"], match.group(0))

    return _PATH.sub(flag, message)


def check_payload(command: str, payload: dict[str, Any]) -> None:
    """The function's own parser on what `command` is about to send; its errors in flags."""
    try:
        parse_payload(payload)
    except InvalidInput as exc:
        raise UsageError(in_flags(command, str(exc))) from None

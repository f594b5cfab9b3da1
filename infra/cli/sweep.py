"""`sweep`: build a sweep policy, have the function run it, show what it found and queued."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from batch_canceller.commands import InvalidInput, parse_payload
from batch_canceller.sweep_policy import MIN_SELECTING_MINUTES, UnselectiveSweep
from infra.cli import EXIT_FAILED, EXIT_OK, OperationFailed, UsageError
from infra.cli.flags import in_flags
from infra.cli.output import print_error, print_json, print_lines, print_note, print_table
from infra.cli.requester import requester
from infra.cli.target import Target

_DURATION = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[mhd]?)")
_MINUTES_PER = {"": 1, "m": 1, "h": 60, "d": 1440}


@dataclass(frozen=True)
class SweepOptions:
    older_than: str | None = None
    metadata: Sequence[str] = ()
    endpoint: str | None = None
    model: str | None = None
    statuses: Sequence[str] = ()
    max_cancels: int | None = None
    dry_run: bool = False
    all: bool = False
    yes: bool = False
    json: bool = False
    requested_by: str | None = None


def parse_minutes(text: str) -> int | float:
    """`20h`, `90m`, `2d`, or a bare number of minutes."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"--older-than {text!r}: expected e.g. 20h, 90m, 2d or minutes (1200)")
    minutes = float(match["amount"]) * _MINUTES_PER[match["unit"]]
    return int(minutes) if minutes.is_integer() else minutes


def build_request(options: SweepOptions) -> dict[str, Any]:
    """The `{"sweep": {...}}` payload, checked by the function's own parser before it is sent."""
    policy: dict[str, Any] = {}
    if options.older_than is not None:
        policy["older_than_minutes"] = parse_minutes(options.older_than)
    metadata = _metadata(options.metadata)
    if metadata:
        policy["metadata"] = metadata
    if options.endpoint is not None:
        policy["endpoint"] = options.endpoint
    if options.model is not None:
        policy["model"] = options.model
    if options.statuses:
        policy["statuses"] = list(dict.fromkeys(options.statuses))
    if options.max_cancels is not None:
        policy["max_cancels"] = options.max_cancels
    if options.dry_run:
        policy["dry_run"] = True
    if options.all:
        policy["all"] = True
    if options.requested_by is not None:
        policy["requested_by"] = options.requested_by
    payload = {"sweep": policy}
    try:
        parse_payload(payload)
    except UnselectiveSweep:
        # The function's own rule (SweepRequest.selects), in the CLI's words.
        raise UsageError(
            "a sweep without a filter that leaves out some batch would cancel every running"
            f" batch: give --older-than ({MIN_SELECTING_MINUTES}m or more), --metadata,"
            " --endpoint, --model or --status (not all four), or --all (try --dry-run first)"
        ) from None
    except InvalidInput as exc:
        raise UsageError(in_flags("sweep", str(exc))) from None
    return payload


def _metadata(pairs: Sequence[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata {pair!r}: expected KEY=VALUE")
        if key in metadata:
            raise UsageError(f"--metadata {key} is given twice")
        metadata[key] = value
    return metadata


def run(target: Target, options: SweepOptions) -> int:
    payload = build_request(replace(options, requested_by=requester(target, options.requested_by)))
    if options.all and not options.dry_run and not options.yes:
        if not sys.stdin.isatty():
            raise UsageError("--all cancels every matching batch: add --yes to run it unattended")
        if not _confirmed(target, payload):
            print_error("not confirmed: nothing was cancelled")
            return EXIT_FAILED
    answer = _invoke(target, payload)
    if options.json:
        print_json(answer)
    else:
        _print_answer(answer)
    if answer.get("complete") is False:
        print_error(
            "the sweep did not finish (out of time, or the listing could not go on):"
            f" {answer.get('queued', 0)} cancels were queued; run it again for the rest"
            " (cancels are idempotent, so a re-run is safe)"
        )
        return EXIT_FAILED
    return EXIT_OK


def _invoke(target: Target, payload: dict[str, Any]) -> dict[str, Any]:
    answer = target.invoke(payload)
    if answer.get("status") == "rejected":
        error = in_flags("sweep", str(answer.get("error")))
        raise OperationFailed(f"the function rejected the sweep: {error}")
    return answer


def _confirmed(target: Target, payload: dict[str, Any]) -> bool:
    """On a terminal, --all first runs as a dry run and names what it would cancel."""
    looked = _invoke(target, {"sweep": {**payload["sweep"], "dry_run": True}})
    count = int(looked.get("matched") or 0) - int(looked.get("skipped_by_max_cancels") or 0)
    sys.stderr.write(f"Cancel {count} batches? type yes: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == "yes"


def _print_answer(answer: dict[str, Any]) -> None:
    dry_run = bool(answer.get("dry_run"))
    print_table(
        ("listed", "matched", "queued", "skipped_by_max_cancels", "complete", "dry_run"),
        [
            [
                answer.get("listed"),
                answer.get("matched"),
                answer.get("queued"),
                answer.get("skipped_by_max_cancels", 0),
                _yes_no(answer.get("complete")),
                _yes_no(dry_run),
            ]
        ],
    )
    if not dry_run:
        return
    would_cancel = [str(i) for i in answer.get("would_cancel") or []]
    print_lines([""])
    print_table(("would_cancel",), ([batch_id] for batch_id in would_cancel))
    selected = int(answer.get("matched") or 0) - int(answer.get("skipped_by_max_cancels") or 0)
    if selected > len(would_cancel):
        print_note(f"(the function lists the first {len(would_cancel)} of {selected})")


def _yes_no(value: object) -> str:
    return "yes" if value else "no"

"""A sweep's policy, `{"sweep": {...}}`: its filters, checked one by one. A destructive sweep
must select: with no filter that leaves out some batch it would cancel every batch of the
organisation, so that takes an explicit `"all": true`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batch_canceller.input_fields import Fields, InvalidInput, join, quoted, text_value

NON_TERMINAL_STATUSES = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
MAX_SWEEP_CANCELS = 100_000
MAX_FILTER_TEXT = 1024
# OpenAI's own metadata limits: 16 pairs, keys of 64 characters, values of 512.
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_STATUSES = 16
MAX_REQUESTED_BY = 1024  # as a command's requested_by
SELECTING_FILTERS = ("older_than_minutes", "metadata", "endpoint", "model", "statuses")
SWEEP_FIELDS = frozenset({*SELECTING_FILTERS, "dry_run", "max_cancels", "all", "requested_by"})
# Under a minute, `older_than_minutes` leaves out only batches created within the last seconds:
# in effect every batch, so it does not count as selecting.
MIN_SELECTING_MINUTES = 1


class UnselectiveSweep(InvalidInput):
    """A destructive sweep whose filters leave out no batch, without `"all": true`."""


@dataclass(frozen=True)
class SweepRequest:
    """Cancel every non-terminal batch that matches all the given filters."""

    older_than_minutes: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    endpoint: str | None = None
    model: str | None = None
    statuses: frozenset[str] | None = None
    dry_run: bool = False
    max_cancels: int | None = None
    # `"all": true`: the sender means every batch (filters given beside it still apply).
    all_batches: bool = False
    # Who ran it (the CLI sends its user); stored as the `requested_by` of every cancel.
    requested_by: str | None = None

    def selects(self) -> bool:
        """Whether any filter leaves out some non-terminal batch. These do not: an empty
        metadata object, `older_than_minutes` under a minute, `statuses` naming all four."""
        return (
            (
                self.older_than_minutes is not None
                and self.older_than_minutes >= MIN_SELECTING_MINUTES
            )
            or bool(self.metadata)
            or self.endpoint is not None
            or self.model is not None
            or (self.statuses is not None and self.statuses < NON_TERMINAL_STATUSES)
        )

    def needs_all(self) -> bool:
        """A sweep that would cancel every running batch without saying `"all": true` (a dry
        run cancels nothing, so it may look at everything without saying so)."""
        return not self.selects() and not self.all_batches and not self.dry_run

    def describe(self) -> dict[str, Any]:
        """The policy as given, for logs, summaries and the cancel reason."""
        described: dict[str, Any] = {
            "older_than_minutes": self.older_than_minutes,
            "metadata": dict(self.metadata) or None,
            "endpoint": self.endpoint,
            "model": self.model,
            "statuses": sorted(self.statuses) if self.statuses is not None else None,
            "max_cancels": self.max_cancels,
            "all": True if self.all_batches else None,
        }
        return {key: value for key, value in described.items() if value is not None}


def parse_sweep(message: Fields) -> SweepRequest:
    message.only({"sweep"})
    sweep = message.object("sweep")
    sweep.only(SWEEP_FIELDS)
    request = SweepRequest(
        older_than_minutes=sweep.number("older_than_minutes", 0, 10**7),
        metadata=_metadata(sweep),
        endpoint=sweep.text("endpoint", MAX_FILTER_TEXT, empty=False),
        model=sweep.text("model", MAX_FILTER_TEXT, empty=False),
        statuses=_statuses(sweep),
        dry_run=bool(sweep.boolean("dry_run")),
        max_cancels=sweep.integer("max_cancels", 1, MAX_SWEEP_CANCELS),
        all_batches=bool(sweep.boolean("all")),
        requested_by=sweep.text("requested_by", MAX_REQUESTED_BY, null_is_absent=True),
    )
    if request.needs_all():
        raise UnselectiveSweep(
            f"{quoted(sweep.path)} has no filter that leaves out any batch and would cancel"
            f" every non-terminal batch: give one of {', '.join(SELECTING_FILTERS)}"
            f" (older_than_minutes of {MIN_SELECTING_MINUTES} or more, statuses leaving out"
            ' one), or "all": true'
        )
    return request


def _metadata(sweep: Fields) -> dict[str, str]:
    if not sweep.has("metadata"):
        return {}
    metadata = sweep.object("metadata")
    if len(metadata.value) > MAX_METADATA_PAIRS:
        raise InvalidInput(
            f"{quoted(metadata.path)} has {len(metadata.value)} pairs;"
            f" at most {MAX_METADATA_PAIRS} are allowed"
        )
    pairs: dict[str, str] = {}
    for key, value in metadata.value.items():
        path = join(metadata.path, str(key))
        if len(str(key)) > MAX_METADATA_KEY:
            raise InvalidInput(f"{quoted(path)}: a key is at most {MAX_METADATA_KEY} characters")
        pairs[str(key)] = text_value(value, path, MAX_METADATA_VALUE)
    return pairs


def _statuses(sweep: Fields) -> frozenset[str] | None:
    if not sweep.has("statuses"):
        return None
    path = sweep.name("statuses")
    statuses = sweep.value["statuses"]
    if not isinstance(statuses, list) or not 1 <= len(statuses) <= MAX_STATUSES:
        raise InvalidInput(
            f"{quoted(path)} must be a list of 1 to {MAX_STATUSES} non-terminal statuses"
        )
    allowed = ", ".join(sorted(NON_TERMINAL_STATUSES))
    for index, status in enumerate(statuses):
        item = text_value(status, join(path, index), MAX_FILTER_TEXT)
        if item not in NON_TERMINAL_STATUSES:
            raise InvalidInput(
                f"{quoted(join(path, index))} may only name a non-terminal status ({allowed})"
            )
    return frozenset(statuses)

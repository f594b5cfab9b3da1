"""The final table of a chaos run."""

from __future__ import annotations

from tests.reliability.leases import CAUSES
from tests.reliability.outcome import Outcome
from tests.reliability.tally import CANCELLED, FAILED, FINISHED

DROPPED = "Events.PutEvents forward_then_drop"
# The function's protocol metrics not shown elsewhere in the table, when it reported them.
OTHER_METRICS = ("EventPublishFailures", "EventMarkFailures", "EventMarksLeftToReceipts")
_AWS_FAULTS = {
    "Events.PutEvents http_error": "Events.PutEvents HTTP 500 (not published, outcome unknown)",
    DROPPED: "Events.PutEvents accepted, then the connection dropped",
    "Events.PutEvents put_events_partial": "Events.PutEvents partial (entries refused)",
}
_API_FAULTS = {
    "429": "429 with retry-after",
    "500": "500",
    "503": "503",
    "delay": "answer past the read timeout",
    "reset": "connection reset",
    "malformed": "malformed JSON body",
}


def render(outcome: Outcome, header: list[str]) -> str:
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: object, expected: object = "") -> None:
        rows.append((name, str(value), str(expected)))

    o = outcome
    row("commands sent (valid + invalid)", f"{o.commands_valid} + {o.commands_invalid}")
    row(
        "batches requested",
        o.batches_requested,
        f"{o.cancel_expected} to cancel, {o.finished_expected} finished, "
        f"{o.missing_expected} unknown",
    )
    row("batches cancelled: emulator state", o.emulator_cancelled, o.cancel_expected)
    row("batches cancelled: records", o.records_cancelled, o.cancel_expected)
    row("records finished before cancel", o.records_finished, o.finished_expected)
    row("records with last_error (404)", o.records_failed, o.missing_expected)
    row("records still owing events", o.records_pending, 0)
    for detail_type, expected in (
        (CANCELLED, o.cancel_expected),
        (FINISHED, o.finished_expected),
        (FAILED, o.missing_expected),
    ):
        row(f"events: {detail_type}", o.events_per_type.get(detail_type, 0), expected)
    for detail_type, count in sorted(o.events_per_type.items()):
        if detail_type not in (CANCELLED, FINISHED, FAILED):
            row(f"events: {detail_type}", count, 0)
    row("duplicate events (extra copies, same batch_id + detail-type)", o.extra_events, 0)
    row("  batches announced more than once", len(o.duplicates), 0)
    row(
        "  of which traced to a SIGKILL between PutEvents and the mark",
        sum(d.by_kill for d in o.duplicates),
    )
    row("lost cancellations (no Batch Cancelled)", len(o.lost_cancellations), 0)
    row("other outcomes never announced", len(o.lost_other), 0)
    row("unexpected events", len(o.unexpected_events), 0)
    row("messages in the DLQ", o.dlq_total)
    distinct = o.dlq_total - o.dlq_copies - len(o.dlq_unexpected)
    row("  distinct invalid inputs (by original_message_id)", distinct, o.commands_invalid)
    row("  copies of an input SQS delivered again", o.dlq_copies)
    row("  invalid inputs missing from the DLQ", len(o.dlq_missing), 0)
    row("  DLQ messages that are not invalid inputs", len(o.dlq_unexpected), 0)
    for reason, count in sorted(o.dlq_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        row(f"  reason: {_clip(reason, 90)}", count)
    for label, count in sorted(o.api_faults.items()):
        row(f"faults: OpenAI API {_API_FAULTS.get(label, label)}", count)
    for label, count in sorted(o.aws_faults.items()):
        row(f"faults: {_AWS_FAULTS.get(label, label)}", count)
        if label == DROPPED:
            rows.extend(_unknown_rows(o))
    row("faults: SQS redeliveries (handled, left undeleted)", o.redeliveries_injected)
    row(
        "faults: SQS concurrent copies (visible again as their invocation began)", o.copies_released
    )
    row("  messages handled by two invocations at the same time", o.copies_concurrent)
    row("  pairs of invocations handling one message at the same time", o.copies_concurrent_pairs)
    row(
        "faults: SIGKILL of a worker (mid-invocation / with accepted events unmarked)",
        f"{o.kills} ({o.kills_mid_invocation} / {o.kills_aimed})",
    )
    metric = o.metrics["ClaimsTakenOver"]
    row(
        "redeliveries past the lease: claims taken over (metric / journals)",
        f"{metric} / {o.takeovers.total}",
    )
    for cause in CAUSES:
        if o.takeovers.causes[cause] or cause != CAUSES[-1]:
            row(f"  the lapsed claim's holder: {cause}", o.takeovers.causes[cause])
    row("invocations stopped at their deadline (the worker exits, as Lambda)", o.worker_timeouts)
    row("worker exits not caused by the run", o.worker_crashes, 0)
    row("invocations / messages received / reported failed", _slash(o))
    row("  longest invocation (s)", f"{o.longest_invocation:.1f}")
    row("invocations that raised (all their messages came back)", o.handler_errors)
    row(
        "receipts handled (the bus's copies of the function's events)",
        o.metrics["PublicationReceipts"],
    )
    row(
        "  events a receipt marked announced (their publisher did not)",
        o.metrics["EventsConfirmedByReceipt"],
    )
    orphaned = o.unmarked.orphaned
    row(
        "  accepted events their publisher did not mark (killed, mark failed, no time left)",
        orphaned.total,
    )
    row("    marked announced by their receipt", orphaned.by_receipt)
    row("    taken over after the lease (a receipt later than the lease)", orphaned.taken_over, 0)
    if orphaned.open:
        row("    no later mark seen (the kill cut the line of their own mark)", orphaned.open)
    for name in OTHER_METRICS:
        if name in o.metrics:
            row(f"function metric {name}", o.metrics[name])
    for operation, count in sorted(o.aws_calls.items()):
        row(f"AWS calls through the proxy: {operation}", count)
    under = o.complete_under_chaos_after
    row("all done under chaos after", "no (time limit)" if under is None else f"{under:.0f} s")
    row("chaos phase / settle phase", f"{o.chaos_seconds:.0f} s / {o.settle_seconds:.0f} s")
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [*header, ""]
    lines.append(f"{'':{width}}  {'value':>{value_width}}  expected")
    lines.append("-" * (width + value_width + 12))
    lines += [
        f"{name:{width}}  {value:>{value_width}}  {expected}".rstrip()
        for name, value, expected in rows
    ]
    lines.append("-" * (width + value_width + 12))
    lines += _details(o)
    lines.append("RESULT: PASS" if o.passed else "RESULT: FAIL - " + "; ".join(o.problems))
    return "\n".join(lines)


def _unknown_rows(o: Outcome) -> list[tuple[str, str, str]]:
    """What became of the PutEvents entries whose outcome the function did not know."""
    unknown = o.unmarked.unknown
    rows = [
        (
            "  PutEvents entries of unknown outcome (metric / journals)",
            f"{o.metrics['EventPublishUnknown']} / {unknown.total}",
            "",
        ),
        ("    marked announced by their receipt (they had gone out)", str(unknown.by_receipt), ""),
        ("    taken over after the lease (no receipt came)", str(unknown.taken_over), ""),
    ]
    if unknown.open:
        rows.append(("    neither", str(unknown.open), "0"))
    return rows


def _details(o: Outcome) -> list[str]:
    lines = list(o.notes)
    for duplicate in o.duplicates[:20]:
        lines.append(
            f"duplicate: {duplicate.batch_id} {duplicate.detail_type!r} x{duplicate.count}"
            f" at {', '.join(duplicate.times)}: {duplicate.cause}"
        )
        lines += [f"  journal: {line}" for line in duplicate.trace]
    lines += [f"lost: {batch_id}" for batch_id in o.lost_cancellations[:20]]
    lines += [f"never announced: {b} ({t})" for b, t in o.lost_other[:20]]
    lines += [f"unexpected event: {b} {t!r}" for b, t in o.unexpected_events[:20]]
    lines += [f"missing from DLQ: {body!r}" for body in o.dlq_missing]
    lines += [f"unexpected in DLQ: {body!r}" for body in o.dlq_unexpected[:20]]
    return lines


def _slash(o: Outcome) -> str:
    return f"{o.invocations} / {o.messages_received} / {o.messages_failed}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Counting a chaos run's outcome once it is over: from the emulator, the table, the events,
the DLQ, the fault counters, the workers' state files, metrics, journals and delivery logs."""

from __future__ import annotations

from collections import Counter

from tests.reliability import announce_journal, leases
from tests.reliability.deliveries import concurrent_copies, read_invocations
from tests.reliability.outcome import Outcome
from tests.reliability.phases import RunLoop, describe_kill
from tests.reliability.tally import (
    check_dead_letters,
    check_events,
    emf_totals,
    emulator_fault_counts,
    emulator_statuses,
    explain_duplicates,
    read_dead_letters,
    scan_records,
)
from tests.reliability.worker import read_states

# The proxy operations worth showing next to the faults injected into them.
SHOWN_CALLS = (
    "Events.PutEvents",
    "DynamoDB.UpdateItem",
    "DynamoDB.BatchGetItem",
    "SQS.SendMessageBatch",
    "SQS.SendMessage",
    "SQS.ChangeMessageVisibilityBatch",
)


def count(outcome: Outcome, loop: RunLoop) -> None:
    workload = loop.workload
    statuses = emulator_statuses(loop.control)
    outcome.emulator_cancelled = sum(statuses.get(b) == "cancelled" for b in workload.cancel_ids)
    records = scan_records(loop.dynamodb, loop.stack.table_name)
    status = {batch_id: record.status for batch_id, record in records.items()}
    outcome.records_cancelled = sum(status.get(b) == "cancelled" for b in workload.cancel_ids)
    outcome.records_finished = sum(status.get(b) == "completed" for b in workload.finished_ids)
    outcome.records_failed = sum(
        b in records and records[b].has_error for b in workload.missing_ids
    )
    outcome.records_pending = sum(1 for r in records.values() if r.pending)
    check_events(outcome, loop.events, loop.expected)
    check_dead_letters(
        outcome, read_dead_letters(loop.sqs, loop.stack.dlq_url), loop.sender.invalid_ids
    )
    outcome.api_faults = emulator_fault_counts(loop.control)
    faults: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for proxy in loop.proxies.values():
        faults.update(proxy.faults_injected)
        calls.update(proxy.calls)
    outcome.aws_faults = {name.replace(":", " "): count for name, count in sorted(faults.items())}
    outcome.aws_calls = {name: calls.get(name, 0) for name in SHOWN_CALLS}
    _count_workers(outcome, loop)


def _count_workers(outcome: Outcome, loop: RunLoop) -> None:
    supervisor = loop.supervisor
    state_dir = supervisor.state_dir
    states = read_states(state_dir)
    outcome.invocations = sum(s.invocations for s in states)
    outcome.messages_received = sum(s.messages for s in states)
    outcome.messages_failed = sum(s.failed_messages for s in states)
    outcome.handler_errors = sum(s.handler_errors for s in states)
    outcome.redeliveries_injected = sum(s.skipped_deletes for s in states)
    outcome.copies_released = sum(s.released_copies for s in states)
    outcome.longest_invocation = max((s.longest_invocation for s in states), default=0.0)
    outcome.metrics = emf_totals(sorted(supervisor.work_dir.glob("worker-*.log")))
    outcome.kills = len(supervisor.kills)
    outcome.kills_mid_invocation = sum(k.mid_invocation for k in supervisor.kills)
    outcome.kills_aimed = sum(k.accepted_unmarked > 0 for k in supervisor.kills)
    outcome.worker_crashes = supervisor.crashes
    outcome.worker_timeouts = supervisor.timeouts
    killed = {k.incarnation for k in supervisor.kills}
    invocations = read_invocations(state_dir)
    deaths = {k.incarnation: k.epoch for k in supervisor.kills}
    overlaps = concurrent_copies(invocations, deaths, loop.config.function_timeout_seconds)
    outcome.copies_concurrent = overlaps.messages
    outcome.copies_concurrent_pairs = overlaps.pairs
    journals = announce_journal.read_all(state_dir)
    outcome.takeovers = leases.takeovers(journals, invocations, killed)
    outcome.unmarked = leases.unmarked_events(journals)
    explain_duplicates(outcome, state_dir, killed)
    traced = Counter(i for d in outcome.duplicates for i in d.killed_incarnations)
    outcome.notes += [
        f"kill: {describe_kill(k)}; {traced[k.incarnation]} duplicate(s) traced to it"
        for k in supervisor.kills
    ]
    outcome.notes += [outcome.takeovers.describe(), outcome.unmarked.describe()]

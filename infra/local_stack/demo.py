"""`make demo`: the canceller on the local stack, from a person's point of view.

Seeds the OpenAI emulator with batches in various states, sends cancel commands the ways a
user would (a bare-ID message, a JSON list, an EventBridge event, a scheduled cancellation,
and an invalid message), shows progress while batches move to `cancelled`, then prints the
records, the events, what the DLQ holds, and which cancellations a webhook ended (the emulator
sends them; the first status check waits 8 s, twice its 4 s cancel). Exits 1 if anything was
lost or announced twice, if no webhook ended a cancellation, or if a status check still sent
a GET for a batch after its webhook.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.local_stack import paths
from infra.local_stack.announce_timing import endings
from infra.local_stack.bus_observer import BusObserver
from infra.local_stack.demo_webhooks import report_webhooks
from infra.local_stack.quiet import quiet_functions
from infra.local_stack.stack import LocalStack, wait_until

TERMINAL = {"cancelled", "completed", "failed", "expired"}
SETTLE_SECONDS = 90


def main() -> int:
    log_file = paths.log_file()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log, LocalStack(cancel_delay_seconds=4.0) as stack:
        quiet_functions(log)
        say(f"moto (AWS) on {stack.aws_endpoint}, OpenAI emulator on {stack.openai.base_url}")
        say(
            f"from template.yaml: {len(stack.provisioned.created)} resources created, "
            f"{len(stack.provisioned.not_emulated)} AWS-only ones not emulated: "
            + _kinds(stack.provisioned.not_emulated)
        )
        plan = seed(stack)
        with BusObserver(stack.client("sqs"), stack.observer_queue_url) as observer:
            send_commands(stack, plan)
            watch(stack, plan, observer)
        return report(stack, plan, observer)


def _kinds(named: list[str]) -> str:
    """`["A (AWS::IAM::Role)", ...]` as `3 IAM::Role, 10 CloudWatch::Alarm, ...`."""
    kinds = Counter(item.rsplit("(", 1)[-1].rstrip(")").removeprefix("AWS::") for item in named)
    return ", ".join(f"{count} {kind}" for kind, count in kinds.items())


def seed(stack: LocalStack) -> dict[str, Any]:
    emulator = stack.openai
    running = [emulator.seed(status="in_progress", metadata={"project": "demo"}) for _ in range(24)]
    validating = [emulator.seed(status="validating") for _ in range(4)]
    finished = [emulator.seed(status=s) for s in ("completed", "completed", "failed", "expired")]
    later = emulator.seed(status="in_progress", metadata={"project": "demo"})
    seeded = len(running) + len(validating) + len(finished) + 1
    # The tables below also show the ID that is not in the emulator (its cancel answers 404).
    say(f"seeded {seeded} batches in the emulator; the commands also name 1 it does not have (404)")
    return {
        "bare": running[0]["id"],
        "json_list": [b["id"] for b in running[1:16]] + [b["id"] for b in finished],
        "event": [b["id"] for b in running[16:]] + [b["id"] for b in validating],
        "scheduled": later["id"],
        "missing": "batch_does_not_exist_404",
        "invalid": "../etc/passwd",
        "finished": {b["id"]: b["status"] for b in finished},
    }


def send_commands(stack: LocalStack, plan: dict[str, Any]) -> None:
    sqs, events = stack.client("sqs"), stack.client("events")
    queue = stack.outputs["CancelQueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=plan["bare"])
    say(f"sent  aws sqs send-message --message-body {plan['bare']}")
    body = {
        "batch_ids": plan["json_list"],
        "reason": "nightly cutoff",
        "requested_by": "ops@example.com",
    }
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    say(f"sent  a JSON command with {len(plan['json_list'])} IDs (4 of them already finished)")
    events.put_events(
        Entries=[
            {
                "EventBusName": stack.outputs["EventBusName"],
                "Source": "com.example.ops",
                "DetailType": "Batch Cancel Requested",
                "Detail": json.dumps({"batch_ids": plan["event"], "reason": "budget exceeded"}),
            }
        ]
    )
    say(f"put   a 'Batch Cancel Requested' event with {len(plan['event'])} IDs on the bus")
    at = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    scheduled = {"batch_id": plan["scheduled"], "cancel_at": at.isoformat(), "reason": "scheduled"}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(scheduled))
    say(f"sent  a scheduled cancellation of {plan['scheduled']} at {at:%H:%M:%S} UTC")
    sqs.send_message(QueueUrl=queue, MessageBody=plan["missing"])
    say(f"sent  {plan['missing']} (unknown to the API)")
    sqs.send_message(QueueUrl=queue, MessageBody=plan["invalid"])
    say(f"sent  {plan['invalid']!r} (invalid: must end in the DLQ with its reason)")


def expected_ids(plan: dict[str, Any]) -> list[str]:
    return [plan["bare"], *plan["json_list"], *plan["event"], plan["scheduled"]]


def watch(stack: LocalStack, plan: dict[str, Any], observer: BusObserver) -> None:
    wanted = expected_ids(plan)
    started = time.monotonic()
    progress = {"printed": 0.0}

    def settled() -> bool:
        events = observer.events()
        statuses = Counter(stack.openai.get(i)["status"] for i in wanted)  # type: ignore[index]
        announced = {e["detail"].get("batch_id") for e in events}
        failed = plan["missing"] in announced
        fired = len(stack.scheduler.fired)
        line = (
            f"\r  {time.monotonic() - started:4.0f}s  cancelled {statuses['cancelled']:2}"
            f"  cancelling {statuses['cancelling']:2}  finished-before {sum(statuses[s] for s in ('completed', 'failed', 'expired')):1}"
            f"  in progress {statuses['in_progress'] + statuses['validating']:2}"
            f"  events {len(events):2}  schedules fired {fired}"
        )
        now = time.monotonic()
        if sys.stdout.isatty():
            print(line, end="", flush=True)
        elif now - progress["printed"] >= 3:
            progress["printed"] = now
            print(line.lstrip("\r"), flush=True)
        return all(i in announced for i in wanted) and failed

    say(
        "watching (a webhook ends each cancellation; status checks, 8 s after each cancel,"
        " are the safety net):"
    )
    wait_until(settled, SETTLE_SECONDS, interval=1.0)
    print()


def report(stack: LocalStack, plan: dict[str, Any], observer: BusObserver) -> int:
    events = observer.events()
    table = stack.client("dynamodb")
    items = table.scan(TableName=stack.outputs["BatchesTableName"], ConsistentRead=True)["Items"]
    say(f"records in {stack.outputs['BatchesTableName']}:")
    rows = [["batch_id", "status", "reason", "requested_by", "announced", "ended_by", "last_error"]]
    for item in sorted(items, key=lambda i: i["batch_id"]["S"]):
        rows.append(
            [
                item["batch_id"]["S"],
                item.get("status", {}).get("S", "-"),
                item.get("reason", {}).get("S", "-"),
                item.get("requested_by", {}).get("S", "-"),
                ", ".join(item.get("announced_events", {}).get("SS", [])) or "-",
                item.get("ended_by", {}).get("S", "-"),
                str(item.get("last_error", {}).get("M", {}).get("http_status", {}).get("N", "-")),
            ]
        )
    print_table(rows)
    per_type = Counter(e["detail-type"] for e in events)
    say("events on the bus:")
    print_table([["detail-type", "count"], *[[k, str(v)] for k, v in sorted(per_type.items())]])
    letters = (
        stack.client("sqs")
        .receive_message(
            QueueUrl=stack.outputs["DeadLetterQueueUrl"],
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
    say("dead-letter queue:")
    print_table(
        [["body", "error_reason"]]
        + [[m["Body"], m["MessageAttributes"]["error_reason"]["StringValue"]] for m in letters]
    )
    fired = stack.scheduler.fired
    say(f"scheduled cancellations fired: {[f'{f.name} at {f.at:%H:%M:%S}' for f in fired]}")
    cancelled = [i for i in expected_ids(plan) if i not in plan["finished"]]
    webhook_problems = report_webhooks(
        endings(stack.openai, items, observer.observed(), cancelled), say
    )
    return verdict(plan, items, events, letters, webhook_problems)


def verdict(
    plan: dict[str, Any],
    items: list[dict[str, Any]],
    events: list[dict[str, Any]],
    letters: list[Any],
    webhook_problems: list[str],
) -> int:
    problems = list(webhook_problems)
    announced = Counter((e["detail"].get("batch_id"), e["detail-type"]) for e in events)
    duplicates = [key for key, count in announced.items() if count > 1]
    stored = {i["batch_id"]["S"]: i.get("status", {}).get("S") for i in items}
    for batch_id in expected_ids(plan):
        expected = plan["finished"].get(batch_id, "cancelled")
        if stored.get(batch_id) != expected:
            problems.append(f"{batch_id}: stored {stored.get(batch_id)}, expected {expected}")
        detail_type = (
            "Batch Cancelled" if expected == "cancelled" else "Batch Finished Before Cancel"
        )
        if announced[(batch_id, detail_type)] != 1:
            problems.append(
                f"{batch_id}: {announced[(batch_id, detail_type)]} '{detail_type}' events"
            )
    if announced[(plan["missing"], "Batch Cancel Failed")] != 1:
        problems.append("the unknown batch was not announced as 'Batch Cancel Failed' once")
    if [m["Body"] for m in letters] != [plan["invalid"]]:
        problems.append(
            f"DLQ holds {[m['Body'] for m in letters]}, expected only the invalid message"
        )
    if duplicates:
        problems.append(f"duplicate events: {duplicates}")
    if problems:
        say("FAILED:")
        for problem in problems:
            print("  - " + problem)
        return 1
    say(
        # Counted as the tables show them: the seeded batches and the one the API answers 404.
        f"OK: {len(expected_ids(plan)) + 1} batches handled ({len(expected_ids(plan))} seeded,"
        " 1 unknown to the API), none lost, none announced twice; the invalid message is in"
        " the DLQ with its reason; webhooks ended cancellations with no status-check GET after"
        f" them. Function logs: {paths.log_file()}"
    )
    return 0


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

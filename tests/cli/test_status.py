"""`status`: records read back after the function ran, as a table and as JSON; `--pending`."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_canceller.announce_protocol import Claim
from batch_canceller.event_ledger import EventLedger
from batch_canceller.statuses import DetailType
from infra.openai_emulator import OpenAIEmulator
from tests.cli import bare_state, cli, write_state
from tests.support import Stack, client, context

IDS = ("batch_quick", "batch_stuck", "batch_done", "batch_gone")
CANCELLED = DetailType.CANCELLED.value


@pytest.fixture
def handled(stack: Stack, emulator: OpenAIEmulator) -> Stack:
    """The function ran on four batches: cancelled, still cancelling, finished first, 404."""
    emulator.seed("batch_quick", cancel_delay_seconds=0)
    emulator.seed("batch_stuck", cancel_delay_seconds=3600)
    emulator.seed("batch_done", status="completed")
    answer = stack.app(emulator.base_url).handle(
        {"batch_ids": list(IDS), "reason": "cutoff", "requested_by": "ops@example.com"}, context()
    )
    assert answer["status"] == "done"
    return stack


def line_of(text: str, batch_id: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(batch_id + " ")]
    return line


def test_status_shows_records_and_not_found_as_a_table_and_json_and_pending_ones(
    handled: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = write_state(handled, emulator, tmp_path)

    code = cli(state, "status", *IDS, "batch_never")

    out, err = capsys.readouterr()
    assert code == 1  # an ID without a record: exit 1, and said in words
    assert "no record of batch_never" in err
    lines = out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "BATCH_ID",
        "STATUS",
        "UPDATED_AT",
        "REASON",
        "REQUESTED_BY",
        "LAST_ERROR",
        "EVENTS_ANNOUNCED",
    ]
    # Aligned: every column starts at the same offset on every line.
    status_column = lines[0].index("STATUS")
    assert all(line[status_column - 2 : status_column] == "  " for line in lines[1:])
    assert re.search(
        r"cancelled\s+\S+Z\s+cutoff\s+ops@example.com\s+-\s+Cancelled$", line_of(out, "batch_quick")
    )
    assert re.search(r"cancelling\s+.*\s+-\s+-$", line_of(out, "batch_stuck"))
    assert line_of(out, "batch_done").endswith("Finished Before Cancel")
    assert re.search(r"\s404 No batch found", line_of(out, "batch_gone"))
    assert line_of(out, "batch_gone").endswith("Cancel Failed")
    assert re.search(r"not found(\s+-)+$", line_of(out, "batch_never"))

    # --pending: only the batch still cancelling (a Scan: this table has no status index).
    assert cli(state, "status", "--pending") == 0
    table = capsys.readouterr().out
    assert cli(state, "status", "--pending", "--json") == 0
    items = json.loads(capsys.readouterr().out)
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["batch_stuck"]
    assert [item["batch_id"] for item in items] == ["batch_stuck"]
    assert items[0]["status"] == "cancelling"


def test_pending_uses_the_status_index_when_the_table_has_one(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb = client("dynamodb", moto_url)
    table = f"indexed-{tmp_path.name}"[:200]
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "batch_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "batch_id", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "status-index",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for batch_id, status, updated in [
        ("b_late", "cancelling", "2026-01-01T02:00:00.000Z"),
        ("b_early", "cancelling", "2026-01-01T01:00:00.000Z"),
        ("b_over", "cancelled", "2026-01-01T00:00:00.000Z"),
    ]:
        dynamodb.put_item(
            TableName=table,
            Item={
                "batch_id": {"S": batch_id},
                "status": {"S": status},
                "updated_at": {"S": updated},
                "poll_attempt": {"N": "3"},
            },
        )
    state = bare_state(tmp_path, moto_url, BatchesTableName=table)

    code = cli(state, "status", "--pending", "--json")

    items = json.loads(capsys.readouterr().out)
    assert code == 0
    # Full items (the index only projects keys), oldest update first.
    assert [(i["batch_id"], i["poll_attempt"]) for i in items] == [("b_early", 3), ("b_late", 3)]


def test_ids_and_pending_together_or_neither_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = bare_state(tmp_path, "http://127.0.0.1:9", BatchesTableName="t")

    assert cli(state, "status") == 2
    assert cli(state, "status", "batch_a", "--pending") == 2
    assert cli(state, "status", "../etc") == 2
    assert "invalid batch ID" in capsys.readouterr().err


def test_owed_events_are_explained_in_words_from_their_claims(
    stack: Stack, emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GIVEN three cancelled batches whose `Batch Cancelled` is owed: claimed by a live
    invocation, claimed by one whose lease has ended, and released (the bus refused it)
    WHEN `status` shows them
    THEN the table says `owed: Cancelled` and a line per batch says which case it is."""
    store, ledger = stack.store(), EventLedger(client("dynamodb", stack.endpoint), stack.table_name)
    now = time.time()
    for batch_id, expires in [("batch_live", now + 600), ("batch_lapsed", now - 60)]:
        store.save_batch(batch_id, {"status": "cancelled"}, claim=Claim(f"m-{batch_id}/n", expires))
    store.save_batch("batch_free", {"status": "cancelled"}, claim=Claim("m-free/n", now + 600))
    assert ledger.release_claim("batch_free", CANCELLED, "m-free/n")
    state = write_state(stack, emulator, tmp_path)

    assert cli(state, "status", "batch_live", "batch_lapsed", "batch_free") == 0

    out = capsys.readouterr().out
    for batch_id in ("batch_live", "batch_lapsed", "batch_free"):
        assert line_of(out, batch_id).endswith("owed: Cancelled")
    words = {line.split(":", 1)[0]: line for line in out.splitlines() if ": Batch " in line}
    live = datetime.fromtimestamp(now + 600, UTC).isoformat(timespec="seconds")
    assert (
        f"Batch Cancelled: owed, claimed by an invocation until {live[:19]}Z" in words["batch_live"]
    )
    assert "waiting for its receipt" in words["batch_live"]
    assert "Batch Cancelled: owed, its claim lapsed at" in words["batch_lapsed"]
    assert "the reconciler" in words["batch_lapsed"]
    assert "Batch Cancelled: owed, not yet published" in words["batch_free"]

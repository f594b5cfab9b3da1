"""`send`: validation before anything is sent, packing, SendMessageBatch, progress, summary."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.cli import UsageError
from infra.cli.send import Message, QueueSender, pack, parse_at
from infra.openai_emulator import OpenAIEmulator
from tests.cli import bare_state, cli, drain, offline_state, queue_state, write_state
from tests.support import Stack


def test_send_2500_ids_from_a_file_packs_25_messages_with_progress_and_a_summary(
    stack: Stack,
    emulator: OpenAIEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("HOSTNAME", "ops-box")
    ids = [f"batch_{n:05d}" for n in range(2500)]
    lines = ["# tonight's cutoff", *ids, "", *ids[:10]]  # a comment, a blank, ten repeats
    (tmp_path / "ids.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    state = write_state(stack, emulator, tmp_path)

    code = cli(
        state, "send", "--file", str(tmp_path / "ids.txt"), "--reason", "cutoff", "--progress"
    )

    captured = capsys.readouterr()
    assert code == 0
    counts = [int(n) for n in re.findall(r"(\d+)/25 messages", captured.err)]
    assert counts == sorted(counts)
    assert counts[-1] == 25
    assert len(set(counts)) >= 2  # the bar moved while sending, not only at the end
    assert "100%" in captured.err.splitlines()[-1]
    assert re.search(r"messages sent\s+25/25", captured.out)
    assert re.search(r"batch IDs sent\s+2500/2500", captured.out)
    assert re.search(r"failed\s+0 messages", captured.out)
    assert re.search(r"duplicates skipped\s+10", captured.out)

    bodies = stack.drain_queue()
    assert len(bodies) == 25
    sent = [batch_id for body in bodies for batch_id in body["batch_ids"]]
    assert len(sent) == 2500
    assert sorted(sent) == ids
    assert all(len(body["batch_ids"]) == 100 for body in bodies)
    assert {body["reason"] for body in bodies} == {"cutoff"}
    assert {body["requested_by"] for body in bodies} == {"alice@ops-box"}
    assert all("cancel_at" not in body for body in bodies)


def test_invalid_ids_in_the_file_send_nothing_and_exit_2(
    moto_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "ids.txt").write_text("batch_ok\n../files\nbatch_fine\na/b\n", encoding="utf-8")
    state, queue_url = queue_state(tmp_path, moto_url)

    code = cli(state, "send", "--file", str(tmp_path / "ids.txt"))

    err = capsys.readouterr().err
    assert code == 2
    assert "ids.txt:2" in err
    assert "../files" in err
    assert "ids.txt:4" in err
    assert "2 invalid batch ID(s); nothing was sent" in err
    assert drain(moto_url, queue_url) == []


def test_skip_invalid_sends_the_valid_ones_read_from_stdin_and_arguments(
    moto_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("batch_a\n  batch_b  # trailing comment\nbad id!\n")
    )
    state, queue_url = queue_state(tmp_path, moto_url)

    code = cli(state, "send", "-", "batch_c", "--skip-invalid", "--requested-by", "ops", "--json")

    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0
    assert summary["batch_ids_sent"] == 3
    assert summary["invalid_skipped"] == ["bad id!"]  # a line is one ID, never split
    assert "skipped: stdin:3" in captured.err
    [body] = drain(moto_url, queue_url)
    assert sorted(body["batch_ids"]) == ["batch_a", "batch_b", "batch_c"]
    assert body["requested_by"] == "ops"


def test_at_in_two_hours_puts_an_absolute_utc_cancel_at_on_every_message(
    moto_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, queue_url = queue_state(tmp_path, moto_url)
    before = datetime.now(UTC)

    code = cli(state, "send", "b1", "b2", "b3", "b4", "b5", "--per-message", "2", "--at", "+2h")

    out = capsys.readouterr().out
    assert code == 0
    bodies = drain(moto_url, queue_url)
    assert len(bodies) == 3
    assert sorted(i for body in bodies for i in body["batch_ids"]) == ["b1", "b2", "b3", "b4", "b5"]
    stamps = {body["cancel_at"] for body in bodies}
    assert len(stamps) == 1  # one moment for the whole send
    [stamp] = stamps
    assert stamp.endswith("+00:00")
    moment = datetime.fromisoformat(stamp)
    assert abs(moment - (before + timedelta(hours=2))) < timedelta(seconds=30)
    assert re.search(r"cancel at\s+" + re.escape(stamp), out)


def test_sqs_failure_exits_1_with_a_clear_message(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"{moto_url}/123456789012/no-such-queue"
    state = bare_state(tmp_path, moto_url, CancelQueueUrl=missing)

    code = cli(state, "send", "batch_a", "batch_b", "--json")

    captured = capsys.readouterr()
    assert code == 1
    assert f"the queue does not exist: {missing}" in captured.err
    assert "1 message(s) with 2 batch ID(s) were not sent" in captured.err
    summary = json.loads(captured.out)
    assert summary["messages_sent"] == 0
    assert summary["failed_batch_ids"] == ["batch_a", "batch_b"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--at", "2030-01-01T06:00:00"], "needs a UTC offset"),
        (["--at", "2001-01-01T06:00:00+00:00"], "not in the future"),
        (["--at", "tomorrow"], "expected ISO-8601"),
        (["--at", "+400d"], "days ahead"),
        (["--per-message", "1001"], "--per-message must be between 1 and 1000"),
        (["--reason", "x" * 1025], "--reason is longer"),
    ],
)
def test_bad_options_are_usage_errors_and_send_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    # Nothing listens at the state's endpoint: any attempt to send would fail with exit 1.
    state = offline_state(tmp_path)

    code = cli(state, "send", "batch_a", *option)

    assert code == 2
    assert message in capsys.readouterr().err


def test_parse_at_accepts_offsets_and_relative_times() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert parse_at("+2h", now) == "2026-03-01T14:00:00+00:00"
    assert parse_at("+1h30m", now) == "2026-03-01T13:30:00+00:00"
    assert parse_at("+1d", now) == "2026-03-02T12:00:00+00:00"
    assert parse_at("2026-03-01T15:00:00+02:00", now) == "2026-03-01T13:00:00+00:00"
    assert parse_at("2026-03-01T13:00:00Z", now) == "2026-03-01T13:00:00+00:00"
    with pytest.raises(UsageError):
        parse_at("+2", now)


def test_calls_stay_within_the_sqs_batch_size_limit() -> None:
    ids = [f"{n:04d}" + "x" * 252 for n in range(3000)]  # 256 characters each
    sqs = FlakySqs(failures=0)

    packed = pack(ids, 1000, {"reason": "r" * 1024, "requested_by": None})
    result = QueueSender(sqs, "https://queue").send(packed)  # type: ignore[arg-type]

    assert len(packed) == 3
    assert [i for m in packed for i in m.batch_ids] == ids
    assert all(json.loads(m.body)["reason"] == "r" * 1024 for m in packed)
    assert len(result.sent) == 3
    # About 260 KB each: one message per SendMessageBatch call.
    assert [len(call) for call in sqs.calls] == [1, 1, 1]
    assert all(sum(len(b.encode()) for b in call) <= 256 * 1024 for call in sqs.calls)


class FlakySqs:
    """Fails the first entries of each call `failures` times, then accepts them."""

    def __init__(self, failures: int, sender_fault: bool = False) -> None:
        self.failures = failures
        self.sender_fault = sender_fault
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append([entry["MessageBody"] for entry in Entries])
        if self.failures > 0:
            self.failures -= 1
            failed = [
                {"Id": e["Id"], "Code": "InternalError", "SenderFault": self.sender_fault}
                for e in Entries[:2]
            ]
            return {"Successful": [{"Id": e["Id"]} for e in Entries[2:]], "Failed": failed}
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def messages(n: int) -> list[Message]:
    return [Message(json.dumps({"batch_ids": [f"b{i}"]}), (f"b{i}",)) for i in range(n)]


def test_failed_entries_are_retried_up_to_three_times() -> None:
    sqs = FlakySqs(failures=3)
    sleeps: list[float] = []

    result = QueueSender(sqs, "https://queue", sleep=sleeps.append).send(messages(12))  # type: ignore[arg-type]

    assert len(result.sent) == 12
    assert result.failed == []
    # Two entries fail in each of the first three calls; only the failed ones are sent again.
    assert [len(call) for call in sqs.calls] == [10, 2, 4, 2]
    assert len(sleeps) == 2


def test_entries_still_failing_after_three_retries_are_reported() -> None:
    sqs = FlakySqs(failures=10)

    result = QueueSender(sqs, "https://queue", sleep=lambda _: None).send(messages(5))  # type: ignore[arg-type]

    assert len(sqs.calls) == 4  # the first try and three retries
    assert len(result.sent) == 3
    assert [m.batch_ids for m in result.failed] == [("b0",), ("b1",)]
    assert "InternalError" in result.errors[0]


def test_sender_faults_are_not_retried() -> None:
    sqs = FlakySqs(failures=10, sender_fault=True)

    result = QueueSender(sqs, "https://queue", sleep=lambda _: None).send(messages(3))  # type: ignore[arg-type]

    assert len(sqs.calls) == 1
    assert len(result.failed) == 2

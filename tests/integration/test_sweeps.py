"""Sweeps: every page listed, each filter applied, cancels queued as ordinary commands."""

from __future__ import annotations

import time
from typing import Any

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context

HOUR = 3600


@pytest.fixture
def fleet(emulator: OpenAIEmulator) -> dict[str, list[str]]:
    """260 batches over three pages: old and young, two projects, two endpoints, every status."""
    now = time.time()
    groups: dict[str, list[str]] = {
        "old_eval": [],
        "young_eval": [],
        "old_other": [],
        "old_finished": [],
        "old_embeddings": [],
    }

    def seed(group: str, **kw: Any) -> None:
        groups[group].append(emulator.seed(**kw)["id"])

    for i in range(120):
        status = ("in_progress", "validating", "finalizing", "cancelling")[i % 4]
        seed(
            "old_eval",
            status=status,
            created_at=int(now - 21 * HOUR - i),
            metadata={"project": "eval"},
        )
    for i in range(60):
        seed(
            "young_eval",
            status="in_progress",
            created_at=int(now - 2 * HOUR - i),
            metadata={"project": "eval"},
        )
    for i in range(40):
        seed(
            "old_other",
            status="in_progress",
            created_at=int(now - 30 * HOUR - i),
            metadata={"project": "other"},
        )
    for i in range(30):
        status = ("completed", "failed", "expired", "cancelled")[i % 4]
        seed(
            "old_finished",
            status=status,
            created_at=int(now - 25 * HOUR - i),
            metadata={"project": "eval"},
        )
    for i in range(10):
        seed(
            "old_embeddings",
            status="in_progress",
            created_at=int(now - 22 * HOUR - i),
            metadata={"project": "eval"},
            endpoint="/v1/embeddings",
            model="text-embedding-3-small",
        )
    return groups


def queued_ids(stack: Stack) -> list[str]:
    return [batch_id for body in stack.drain_queue() for batch_id in body.get("batch_ids", [])]


def sweep(stack: Stack, emulator: OpenAIEmulator, **policy: Any) -> dict[str, Any]:
    return stack.app(emulator.base_url).handle({"sweep": policy}, context())


def test_sweep_lists_every_page_and_queues_old_non_terminal_batches_of_the_project(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    answer = sweep(stack, emulator, older_than_minutes=20 * 60, metadata={"project": "eval"})

    expected = set(fleet["old_eval"]) | set(fleet["old_embeddings"])
    assert answer["listed"] == 260
    assert answer["matched"] == len(expected)
    assert answer["complete"] is True
    assert sorted(queued_ids(stack)) == sorted(expected)
    pages = [r for r in emulator.requests if r.method == "GET" and r.path.endswith("/batches")]
    assert len(pages) == 3
    summary = stack.events_of("Batch Sweep Completed")
    assert len(summary) == 1
    assert summary[0]["detail"]["queued"] == len(expected)


def test_sweep_filters_by_endpoint_model_and_status(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    by_endpoint = sweep(stack, emulator, endpoint="/v1/embeddings")
    assert sorted(queued_ids(stack)) == sorted(fleet["old_embeddings"])
    assert by_endpoint["matched"] == 10

    sweep(stack, emulator, model="text-embedding-3-small", older_than_minutes=0)
    assert sorted(queued_ids(stack)) == sorted(fleet["old_embeddings"])

    answer = sweep(stack, emulator, statuses=["validating"], metadata={"project": "eval"})
    validating = [i for n, i in enumerate(fleet["old_eval"]) if n % 4 == 1]
    assert sorted(queued_ids(stack)) == sorted(validating)
    assert answer["matched"] == 30


def test_dry_run_reports_and_cancels_nothing(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    answer = sweep(
        stack, emulator, older_than_minutes=20 * 60, metadata={"project": "other"}, dry_run=True
    )

    assert sorted(answer["would_cancel"]) == sorted(fleet["old_other"])
    assert answer["queued"] == 0
    assert queued_ids(stack) == []
    assert [r for r in emulator.requests if r.method == "POST"] == []


def test_max_cancels_bounds_one_run(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    answer = sweep(stack, emulator, metadata={"project": "other"}, max_cancels=15)

    assert answer["matched"] == 40
    assert answer["queued"] == 15
    assert answer["skipped_by_max_cancels"] == 25
    assert len(queued_ids(stack)) == 15


def test_queued_sweep_cancels_are_carried_out_with_records_and_events(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    app = stack.app(emulator.base_url)
    emulator.cancel_delay_seconds = 0
    app.handle({"sweep": {"metadata": {"project": "other"}}}, context())

    stack.run_until(app, lambda: len(stack.events_of("Batch Cancelled")) >= 40)

    item = stack.item(fleet["old_other"][0])
    assert item is not None
    assert item["requested_by"] == "batch-canceller sweep"
    assert item["reason"].startswith("sweep ")


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"older_than_minutes": "20h"}, "older_than_minutes"),
        ({"statuses": ["completed"]}, "non-terminal"),
        ({"metadata": {"project": 5}}, "metadata"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"max_cancels": 0}, "max_cancels"),
        ({"owner": "me"}, "unknown field"),
    ],
)
def test_invalid_sweep_policy_goes_to_the_dlq_with_its_reason(
    stack: Stack, emulator: OpenAIEmulator, policy: dict[str, Any], reason: str
) -> None:
    answer = sweep(stack, emulator, **policy)

    assert answer["status"] == "rejected"
    assert reason in answer["error"]
    letters = stack.dead_letters()
    assert reason in letters[0]["MessageAttributes"]["error_reason"]["StringValue"]
    assert emulator.requests == []

"""Sweeps: every page listed, each filter applied, cancels queued as ordinary commands."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.integration.conftest import aged, fake_api, listed_as_given
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
            # The `cancelling` ones stay so for the test (on a slow machine the emulator's
            # default delay ended them between the dry run and the sweep).
            cancel_delay_seconds=3600,
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
            created_at=int(now - 23 * HOUR - i),
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


def test_a_sweep_that_names_who_ran_it_stores_them_as_requested_by(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    """The CLI sends its user (`requested_by`); every cancel of the sweep carries it."""
    app = stack.app(emulator.base_url)
    emulator.cancel_delay_seconds = 0
    policy = {"metadata": {"project": "other"}, "requested_by": "alice@ops-box"}
    answer = app.handle({"sweep": policy}, context())

    stack.run_until(app, lambda: len(stack.events_of("Batch Cancelled")) >= 40)

    assert answer["requested_by"] == "alice@ops-box"
    assert answer["policy"] == {"metadata": {"project": "other"}}  # who is not a filter
    assert {(stack.item(b) or {}).get("requested_by") for b in fleet["old_other"]} == {
        "alice@ops-box"
    }


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


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"metadata": {}},
        {"metadata": []},
        {"metadata": ""},
        {"metadata": 0},
        {"metadata": False},
        {"max_cancels": 5},
        {"all": False},
    ],
    ids=repr,
)
def test_a_sweep_that_selects_nothing_or_has_a_wrong_type_is_rejected_not_run_on_everything(
    stack: Stack, emulator: OpenAIEmulator, policy: dict[str, Any]
) -> None:
    emulator.seed(status="in_progress")

    answer = sweep(stack, emulator, **policy)

    assert answer["status"] == "rejected"
    assert "'sweep" in answer["error"]
    assert emulator.requests == []
    assert queued_ids(stack) == []


def test_all_true_sweeps_every_non_terminal_batch_and_a_dry_run_needs_no_filter(
    stack: Stack, emulator: OpenAIEmulator, fleet: dict[str, list[str]]
) -> None:
    looked = sweep(stack, emulator, dry_run=True)
    assert looked["matched"] == 230
    assert queued_ids(stack) == []

    answer = sweep(stack, emulator, all=True)

    assert answer["policy"] == {"all": True}
    assert answer["queued"] == 230
    assert len(queued_ids(stack)) == 230
    # Filters beside "all" still apply.
    assert sweep(stack, emulator, all=True, metadata={"project": "other"})["queued"] == 40


def test_a_sweep_stops_paging_at_batches_too_old_to_be_running(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    now = time.time()
    young = [
        emulator.seed(status="in_progress", created_at=int(now - HOUR - i))["id"]
        for i in range(150)
    ]
    # An organisation's history: thousands of batches past the 24 h window, all terminal.
    for i in range(20_000):
        status = ("completed", "failed", "expired", "cancelled")[i % 4]
        emulator.seed(status=status, created_at=int(now - 26 * HOUR - i))

    answer = sweep(stack, emulator, all=True, dry_run=True)

    pages = [r for r in emulator.requests if r.method == "GET" and r.path.endswith("/batches")]
    assert (answer["pages"], len(pages)) == (2, 2)
    assert answer["stopped_by_age"] is True
    assert answer["complete"] is True
    assert sorted(answer["would_cancel"]) == sorted(young)


def test_a_running_batch_past_the_window_keeps_the_sweep_paging(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    now = time.time()
    for i in range(150):
        emulator.seed(status="in_progress", created_at=int(now - HOUR - i))
    # A gateway with longer windows: old batches still running are not given up on.
    for i in range(150):
        emulator.seed(status="in_progress", created_at=int(now - 50 * HOUR - i))

    answer = sweep(stack, emulator, all=True, dry_run=True)

    assert (answer["pages"], answer["stopped_by_age"], answer["matched"]) == (3, False, 300)


def test_a_gateway_cursor_is_passed_on_as_given(stack: Stack) -> None:
    cursor = "cursor:abc/+="
    seen: list[dict[str, list[str]]] = []

    def answer(method: str, path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        query = parse_qs(urlsplit(path).query)
        seen.append(query)
        if "after" not in query:
            batch = {"id": "batch_one", "status": "in_progress", "created_at": int(time.time())}
            return 200, {}, {"object": "list", "data": [batch], "has_more": True, "last_id": cursor}
        batch = {"id": "batch_two", "status": "in_progress", "created_at": int(time.time()) - 5}
        return 200, {}, {"object": "list", "data": [batch], "has_more": False, "last_id": None}

    with fake_api(answer) as base_url:
        result = stack.app(base_url).handle({"sweep": {"all": True, "dry_run": True}}, context())

    assert [query.get("after") for query in seen] == [None, [cursor]]
    assert result["would_cancel"] == ["batch_one", "batch_two"]
    assert result["pages"] == 2


EVERY_RUNNING_STATUS = ["validating", "in_progress", "finalizing", "cancelling"]


@pytest.mark.parametrize(
    "policy",
    [
        {"older_than_minutes": 0},
        {"older_than_minutes": 1e-9},
        {"older_than_minutes": 0.99},
        {"statuses": EVERY_RUNNING_STATUS},
    ],
    ids=repr,
)
def test_a_filter_that_leaves_out_no_batch_needs_all(
    stack: Stack, emulator: OpenAIEmulator, policy: dict[str, Any]
) -> None:
    # Five running batches, all created now: each of these filters matches every one of them.
    for i in range(5):
        emulator.seed(status="in_progress", metadata={"team": f"t{i}"})

    answer = sweep(stack, emulator, **policy)

    assert answer["status"] == "rejected"
    assert '"all": true' in answer["error"]
    assert emulator.requests == []
    assert queued_ids(stack) == []


def test_an_oldest_first_listing_is_paged_to_its_end(stack: Stack) -> None:
    # Oldest first, two per page: page 1 is two completed batches from 30 h ago, in the same
    # second (equal times show no order), then three running ones.
    batches = [
        aged(1, "completed", 30),
        aged(2, "completed", 30),
        aged(3, "in_progress", 2),
        aged(4, "in_progress", 1),
        aged(5, "validating", 0),
    ]
    batches[1]["created_at"] = batches[0]["created_at"]

    with fake_api(listed_as_given(batches, 2)) as url:
        answer = stack.app(url).handle({"sweep": {"metadata": {"team": "x"}}}, context())

    assert (answer["pages"], answer["stopped_by_age"], answer["matched"]) == (3, False, 3)
    assert sorted(queued_ids(stack)) == ["batch_0003", "batch_0004", "batch_0005"]


def test_one_batch_pages_show_no_order_and_do_not_stop_the_sweep(stack: Stack) -> None:
    # One batch per page (the gateway's page size, whatever `limit` asks), oldest first.
    batches = [aged(1, "completed", 48), aged(2, "in_progress", 3), aged(3, "in_progress", 0)]

    with fake_api(listed_as_given(batches, 1)) as url:
        answer = stack.app(url).handle({"sweep": {"metadata": {"team": "x"}}}, context())

    assert (answer["pages"], answer["stopped_by_age"], answer["matched"]) == (3, False, 2)


def test_an_empty_page_with_more_to_come_is_reported_incomplete(stack: Stack) -> None:
    def answer(method: str, path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        return 200, {}, {"object": "list", "data": [], "has_more": True, "last_id": None}

    with fake_api(answer) as url:
        result = stack.app(url).handle({"sweep": {"metadata": {"team": "x"}}}, context())

    assert (result["complete"], result["run_again"], result["listed"]) == (False, True, 0)

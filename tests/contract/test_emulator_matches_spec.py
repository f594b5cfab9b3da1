"""What the OpenAI emulator sends validates against the derived spec: Batch objects in every
status, cancel answers, list pages, and the error bodies the canceller acts on.

Validation is JSON Schema 2020-12 on the spec's own components (OpenAPI 3.1 needs no `nullable`
conversion). The Batch schema allows unknown properties, so key sets are compared separately."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from infra.openai_emulator import (
    BATCH_STATUSES,
    CANCELLABLE_STATUSES,
    TERMINAL_STATUSES,
    Fault,
    OpenAIEmulator,
)
from tests.contract.fixtures import example_value, spec, violations

KEY = "sk-emulator-contract"
AUTH = {"Authorization": f"Bearer {KEY}"}
CANCEL = "/batches/{batch_id}/cancel"


@pytest.fixture
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={KEY}, cancel_delay_seconds=60.0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()


def call(
    http: urllib3.PoolManager,
    emu: OpenAIEmulator,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    raw = http.request(
        method,
        emu.base_url + path,
        headers=AUTH if headers is None else headers,
        body=None if body is None else json.dumps(body).encode(),
    )
    # The spec (with our addition) gives every answer an x-request-id.
    assert raw.headers.get("x-request-id", "").startswith("req_"), "no x-request-id"
    return raw.status, json.loads(raw.data)


def batch_properties() -> set[str]:
    return set(spec()["components"]["schemas"]["Batch"]["properties"])


@pytest.mark.parametrize("status", sorted(BATCH_STATUSES))
def test_batch_in_each_status_matches_the_spec(
    emu: OpenAIEmulator, http: urllib3.PoolManager, status: str
) -> None:
    batch_id = emu.seed(status=status, metadata={"team": "ops"})["id"]

    code, batch = call(http, emu, "GET", f"/batches/{batch_id}")

    assert code == 200
    assert violations("Batch", batch) == []
    assert set(batch) == batch_properties(), "fields the spec does not know, or missing ones"


def test_spec_status_enum_is_exactly_the_emulators_statuses() -> None:
    enum = spec()["components"]["schemas"]["Batch"]["properties"]["status"]["enum"]
    assert set(enum) == set(BATCH_STATUSES)


@pytest.mark.parametrize("status", sorted(CANCELLABLE_STATUSES | {"cancelling"}))
def test_cancel_answer_is_a_spec_batch(
    emu: OpenAIEmulator, http: urllib3.PoolManager, status: str
) -> None:
    batch_id = emu.seed(status=status)["id"]

    code, batch = call(http, emu, "POST", f"/batches/{batch_id}/cancel")

    assert code == 200
    assert violations("Batch", batch) == []
    assert batch["status"] == "cancelling"


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_cancel_of_a_terminal_batch_answers_the_specs_409(
    emu: OpenAIEmulator, http: urllib3.PoolManager, status: str
) -> None:
    batch_id = emu.seed(status=status)["id"]

    code, body = call(http, emu, "POST", f"/batches/{batch_id}/cancel")

    assert code == 409
    assert violations("ErrorResponse", body) == []
    assert body == example_value(CANCEL, "post", "409", f"already_{status}")


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel")])
def test_unknown_batch_answers_the_specs_404(
    emu: OpenAIEmulator, http: urllib3.PoolManager, method: str, suffix: str
) -> None:
    code, body = call(http, emu, method, "/batches/batch_abc123" + suffix)

    assert code == 404
    assert violations("ErrorResponse", body) == []
    assert body == example_value(CANCEL, "post", "404", "not_found")


@pytest.mark.parametrize(
    ("headers", "example"),
    [({}, "missing_api_key"), ({"Authorization": "Bearer sk-tampered"}, "invalid_api_key")],
)
def test_rejected_credentials_answer_the_specs_401(
    emu: OpenAIEmulator, http: urllib3.PoolManager, headers: dict[str, str], example: str
) -> None:
    code, body = call(http, emu, "POST", "/batches/batch_abc123/cancel", headers=headers)

    assert code == 401
    assert violations("ErrorResponse", body) == []
    expected = example_value(CANCEL, "post", "401", example)["error"]
    assert body["error"]["code"] == expected["code"]
    assert body["error"]["type"] == expected["type"]


def test_every_list_page_matches_the_spec(emu: OpenAIEmulator, http: urllib3.PoolManager) -> None:
    seeded = {emu.seed(created_at=1_700_000_000 + i)["id"] for i in range(5)}
    pages: list[dict[str, Any]] = []
    after = ""
    while True:
        code, page = call(http, emu, "GET", f"/batches?limit=2{after}")
        assert code == 200
        assert violations("ListBatchesResponse", page) == []
        pages.append(page)
        if not page["has_more"]:
            break
        after = f"&after={page['last_id']}"

    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    assert {b["id"] for p in pages for b in p["data"]} == seeded
    assert all(p["first_id"] == p["data"][0]["id"] for p in pages)


def test_an_empty_list_page_matches_the_spec(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    code, page = call(http, emu, "GET", "/batches?limit=100")

    assert code == 200
    assert page["data"] == []
    assert violations("ListBatchesResponse", page) == []


def test_list_without_limit_uses_the_specs_default(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.seed_many(25)
    limit = next(
        p for p in spec()["paths"]["/batches"]["get"]["parameters"] if p["name"] == "limit"
    )

    _, page = call(http, emu, "GET", "/batches")

    assert len(page["data"]) == limit["schema"]["default"] == 20


@pytest.mark.parametrize("limit", ["0", "101"])
def test_limit_outside_the_specs_bounds_is_refused(
    emu: OpenAIEmulator, http: urllib3.PoolManager, limit: str
) -> None:
    code, body = call(http, emu, "GET", f"/batches?limit={limit}")

    assert code == 400
    assert violations("ErrorResponse", body) == []
    assert body["error"]["param"] == "limit"


def test_created_batch_matches_the_spec(emu: OpenAIEmulator, http: urllib3.PoolManager) -> None:
    request = {
        "input_file_id": "file-abc123",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    assert violations("CreateBatchRequest", request) == []

    code, batch = call(http, emu, "POST", "/batches", body=request)

    assert code == 200
    assert violations("Batch", batch) == []
    assert batch["status"] == "validating"


def test_create_with_an_endpoint_outside_the_specs_enum_is_refused(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    request = {"input_file_id": "file-abc123", "endpoint": "/v1/nope", "completion_window": "24h"}
    assert violations("CreateBatchRequest", request) != []

    code, body = call(http, emu, "POST", "/batches", body=request)

    assert code == 400
    assert body["error"]["param"] == "endpoint"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_status_faults_answer_error_responses(
    emu: OpenAIEmulator, http: urllib3.PoolManager, status: int
) -> None:
    batch_id = emu.seed()["id"]
    emu.inject(Fault("status", status=status))

    code, body = call(http, emu, "POST", f"/batches/{batch_id}/cancel")

    assert code == status
    assert violations("ErrorResponse", body) == []


def test_chaos_429_retry_after_matches_the_specs_header(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    header_schema = spec()["paths"][CANCEL]["post"]["responses"]["429"]["headers"]["Retry-After"]
    assert header_schema["schema"] == {"type": "integer", "minimum": 1}
    batch_id = emu.seed()["id"]
    # Seeded chaos with no delay: deterministic and fast; drops and resets are just skipped.
    emu.inject(Fault("chaos", times=None, seed=7, delay_seconds=0.0))
    seen: list[str] = []
    for _ in range(120):
        try:
            raw = http.request("GET", f"{emu.base_url}/batches/{batch_id}", headers=AUTH)
        except urllib3.exceptions.HTTPError:
            continue
        if raw.status == 429 and "retry-after" in raw.headers:
            seen.append(raw.headers["retry-after"])
    assert seen, "no chaos 429 carried retry-after; pick another seed"
    assert [v for v in seen if not (v.isdigit() and int(v) >= 1)] == []

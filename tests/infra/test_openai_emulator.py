"""The OpenAI Batch API emulator, exercised the way clients see it: over real sockets."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.openai_emulator import TERMINAL_STATUSES, Fault, OpenAIEmulator

# shared/ lies beside the checkout, in development and in CI.
SPEC = Path(__file__).resolve().parents[3] / "shared" / "openai-openapi" / "openapi.yaml"
REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={KEY}, cancel_delay_seconds=2.0, clock=clock) as emulator:
        yield emulator


@pytest.fixture
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
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> urllib3.BaseHTTPResponse:
    sent = {"Authorization": f"Bearer {key}"} if key is not None else {}
    sent.update(headers or {})
    return http.request(method, emu.base_url + path, headers=sent, **kw)


def control(
    http: urllib3.PoolManager, emu: OpenAIEmulator, method: str, path: str, body: Any = None
) -> urllib3.BaseHTTPResponse:
    data = None if body is None else json.dumps(body).encode()
    return http.request(method, emu.url + "/_emulator" + path, body=data)


def error_of(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(response.data)["error"]
    return error


def spec_schema(name: str) -> tuple[set[str], set[str]]:
    """Property and required names of a `components/schemas` entry, without a YAML parser."""
    assert SPEC.exists(), f"the official spec is expected at {SPEC}"
    lines = SPEC.read_text().splitlines()
    start = lines.index(f"    {name}:")
    properties: set[str] = set()
    required: set[str] = set()
    section = ""
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith("      "):
            break  # the next schema
        if re.match(r"^ {6}\S", line):
            section = line.strip()
        elif section == "properties:" and (m := re.match(r"^ {8}([A-Za-z_]+):", line)):
            properties.add(m.group(1))
        elif section == "required:" and (m := re.match(r"^ {8}- (\S+)", line)):
            required.add(m.group(1))
    assert properties, f"schema {name} not parsed"
    return properties, required


# -- shape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        "validating",
        "in_progress",
        "finalizing",
        "cancelling",
        "cancelled",
        "completed",
        "failed",
        "expired",
    ],
)
def test_batch_has_every_field_of_the_spec_schema(
    emu: OpenAIEmulator, http: urllib3.PoolManager, status: str
) -> None:
    properties, required = spec_schema("Batch")
    assert {"id", "status", "request_counts", "cancelled_at"} <= properties
    batch_id = emu.seed(status=status)["id"]

    response = call(http, emu, "GET", f"/batches/{batch_id}")

    assert response.status == 200
    batch = json.loads(response.data)
    assert set(batch) == properties  # every field, nulls included, nothing invented
    assert all(batch[name] is not None for name in required)
    assert batch["object"] == "batch"
    assert batch["status"] == status
    assert set(batch["request_counts"]) == {"total", "completed", "failed"}
    assert all(isinstance(batch[f], int) for f in ("created_at", "expires_at"))


def test_list_matches_the_spec_list_response(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    properties, required = spec_schema("ListBatchesResponse")
    emu.seed_many(3)

    body = json.loads(call(http, emu, "GET", "/batches").data)

    assert set(body) == properties
    assert required <= set(body)
    assert body["object"] == "list"


def test_extra_seed_fields_are_served_verbatim(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    batch = emu.seed(future_field={"nested": [1, [2.5, None]]}, score=0.125, metadata={"k": "v"})

    served = json.loads(call(http, emu, "GET", f"/batches/{batch['id']}").data)

    assert served["future_field"] == {"nested": [1, [2.5, None]]}
    assert served["score"] == 0.125
    assert served["metadata"] == {"k": "v"}


# -- lifecycle ---------------------------------------------------------------------------


def test_cancel_goes_cancelling_then_cancelled_on_the_clock(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    batch_id = emu.seed(status="in_progress")["id"]

    cancelled = json.loads(call(http, emu, "POST", f"/batches/{batch_id}/cancel").data)
    assert cancelled["status"] == "cancelling"
    assert cancelled["cancelling_at"] == int(T0)
    assert cancelled["cancelled_at"] is None

    clock.advance(1.9)
    assert json.loads(call(http, emu, "GET", f"/batches/{batch_id}").data)["status"] == (
        "cancelling"
    )
    clock.advance(0.2)
    later = json.loads(call(http, emu, "GET", f"/batches/{batch_id}").data)
    assert later["status"] == "cancelled"
    assert later["cancelled_at"] == int(T0 + 2.0)
    assert emu.get(batch_id) == later


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing"])
def test_zero_delay_answers_cancelled_at_once(
    clock: FakeClock, http: urllib3.PoolManager, status: str
) -> None:
    with OpenAIEmulator(api_keys={KEY}, cancel_delay_seconds=0, clock=clock) as emu:
        batch_id = emu.seed(status=status)["id"]
        body = json.loads(call(http, emu, "POST", f"/batches/{batch_id}/cancel").data)
    assert body["status"] == "cancelled"
    assert body["cancelling_at"] == body["cancelled_at"] == int(T0)


def test_per_batch_cancel_delay_overrides_the_default(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    slow = emu.seed(cancel_delay_seconds=10)["id"]
    fast = emu.seed(cancel_delay_seconds=0)["id"]
    for batch_id in (slow, fast):
        call(http, emu, "POST", f"/batches/{batch_id}/cancel")
    clock.advance(5)
    assert emu.get(slow)["status"] == "cancelling"  # type: ignore[index]
    assert emu.get(fast)["status"] == "cancelled"  # type: ignore[index]


def test_cancel_on_cancelling_is_idempotent(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    batch_id = emu.seed()["id"]
    first = json.loads(call(http, emu, "POST", f"/batches/{batch_id}/cancel").data)
    clock.advance(1)

    again = call(http, emu, "POST", f"/batches/{batch_id}/cancel")

    assert again.status == 200
    assert json.loads(again.data) == first  # same cancelling_at: the clock did not restart
    clock.advance(1)
    assert emu.get(batch_id)["status"] == "cancelled"  # type: ignore[index]


def test_a_lagging_cancel_answers_the_batch_unchanged_and_takes_effect_later(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    # Set through the control plane, as another process would.
    assert control(http, emu, "POST", "/config", {"cancel_lag_seconds": 3}).status == 200
    batch_id = emu.seed(status="in_progress")["id"]

    answer = json.loads(call(http, emu, "POST", f"/batches/{batch_id}/cancel").data)
    clock.advance(1)
    again = json.loads(call(http, emu, "POST", f"/batches/{batch_id}/cancel").data)
    still = emu.get(batch_id)["status"]  # type: ignore[index]
    clock.advance(2)  # the first cancel takes effect now (T0 + 3), the second did not move it
    cancelling = emu.get(batch_id)
    clock.advance(2)  # and the cancel delay (2 s) runs from then

    assert (answer["status"], answer["cancelling_at"]) == ("in_progress", None)
    assert (again["status"], still) == ("in_progress", "in_progress")
    assert cancelling["status"] == "cancelling"  # type: ignore[index]
    assert cancelling["cancelling_at"] == int(T0 + 3)  # type: ignore[index]
    assert emu.get(batch_id)["cancelled_at"] == int(T0 + 5)  # type: ignore[index]
    assert emu.config()["cancel_lag_seconds"] == 3


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_cancel_on_a_terminal_batch_is_409(
    emu: OpenAIEmulator, http: urllib3.PoolManager, status: str
) -> None:
    batch_id = emu.seed(status=status)["id"]

    response = call(http, emu, "POST", f"/batches/{batch_id}/cancel")

    assert response.status == 409
    assert error_of(response) == {
        "message": f"Cannot cancel a batch with status '{status}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert emu.get(batch_id)["status"] == status  # type: ignore[index]


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/cancel")])
def test_unknown_batch_is_404(
    emu: OpenAIEmulator, http: urllib3.PoolManager, method: str, suffix: str
) -> None:
    response = call(http, emu, method, f"/batches/batch_nope{suffix}")

    assert response.status == 404
    assert error_of(response) == {
        "message": "No batch found with id 'batch_nope'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_create_batch_starts_validating(emu: OpenAIEmulator, http: urllib3.PoolManager) -> None:
    body = {"input_file_id": "file-abc", "endpoint": "/v1/embeddings", "completion_window": "24h"}

    response = call(http, emu, "POST", "/batches", body=json.dumps(body).encode())

    batch = json.loads(response.data)
    assert response.status == 200
    assert (batch["status"], batch["input_file_id"]) == ("validating", "file-abc")
    assert call(http, emu, "POST", "/batches", body=b"{}").status == 400


# -- listing -----------------------------------------------------------------------------


def test_list_pages_250_batches_newest_first(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    # Half share one created_at so the id tie-break is exercised as well.
    seeded = [emu.seed(created_at=int(T0) - (i if i % 2 else 0)) for i in range(250)]
    expected = [b["id"] for b in sorted(seeded, key=lambda b: (b["created_at"], b["id"]))][::-1]

    pages: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        fields = {"limit": "100"} | ({"after": after} if after else {})
        page = json.loads(call(http, emu, "GET", "/batches", fields=fields).data)
        pages.append(page)
        if not page["has_more"]:
            break
        after = page["last_id"]

    assert [len(p["data"]) for p in pages] == [100, 100, 50]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert [b["id"] for p in pages for b in p["data"]] == expected
    for page in pages:
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]


def test_list_defaults_to_20_and_unknown_cursor_is_empty(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.seed_many(25)
    assert len(json.loads(call(http, emu, "GET", "/batches").data)["data"]) == 20
    empty = json.loads(call(http, emu, "GET", "/batches", fields={"after": "batch_x"}).data)
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize("limit", ["0", "101", "-5", "abc"])
def test_limit_outside_1_to_100_is_400(
    emu: OpenAIEmulator, http: urllib3.PoolManager, limit: str
) -> None:
    response = call(http, emu, "GET", "/batches", fields={"limit": limit})

    assert response.status == 400
    assert error_of(response)["param"] == "limit"
    assert error_of(response)["type"] == "invalid_request_error"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    created=st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=30),
    limit=st.integers(min_value=1, max_value=7),
)
def test_paging_visits_every_batch_once_in_order(
    emu: OpenAIEmulator, http: urllib3.PoolManager, created: list[int], limit: int
) -> None:
    emu.reset()
    seeded = [emu.seed(created_at=int(T0) + c) for c in created]
    seen: list[str] = []
    after = ""
    while True:
        page = json.loads(
            call(http, emu, "GET", "/batches", fields={"limit": str(limit), "after": after}).data
        )
        seen += [b["id"] for b in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    ordered = sorted(seeded, key=lambda b: (b["created_at"], b["id"]), reverse=True)
    assert seen == [b["id"] for b in ordered]


# -- auth and API styles -----------------------------------------------------------------


def test_missing_or_wrong_key_is_401_without_echoing_the_key(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    missing = call(http, emu, "GET", "/batches", key=None)
    wrong = call(http, emu, "GET", "/batches", key="sk-wrong-secret-123")

    assert (missing.status, wrong.status) == (401, 401)
    assert error_of(missing)["code"] == error_of(wrong)["code"] == "invalid_api_key"
    assert error_of(wrong)["message"] == (
        "Incorrect API key provided: sk-****. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    assert b"wrong-secret" not in wrong.data


def test_key_rotation(emu: OpenAIEmulator, http: urllib3.PoolManager) -> None:
    assert call(http, emu, "GET", "/batches").status == 200
    emu.set_api_keys({"sk-new"})
    assert call(http, emu, "GET", "/batches").status == 401
    assert call(http, emu, "GET", "/batches", key="sk-new").status == 200


def test_azure_classic_needs_api_key_header_and_api_version(http: urllib3.PoolManager) -> None:
    with OpenAIEmulator(api_keys={"az-key"}, path_prefix="/openai", api_style="azure") as emu:
        batch_id = emu.seed()["id"]
        path = f"/batches/{batch_id}"
        version = {"api-version": "2024-10-21"}
        ok = call(http, emu, "GET", path, key=None, headers={"api-key": "az-key"}, fields=version)
        bearer = call(http, emu, "GET", path, key="az-key", fields=version)
        no_version = call(http, emu, "GET", path, key=None, headers={"api-key": "az-key"})
        cancel = http.request(
            "POST",
            f"{emu.base_url}/batches/{batch_id}/cancel?api-version=2024-10-21",
            headers={"api-key": "az-key"},
        )

    assert emu.base_url.endswith("/openai")
    assert ok.status == 200
    assert bearer.status == 401
    assert no_version.status == 400
    assert "api-version" in error_of(no_version)["message"]
    assert json.loads(cancel.data)["status"] == "cancelling"


def test_azure_v1_needs_no_api_version(http: urllib3.PoolManager) -> None:
    with OpenAIEmulator(api_keys={"az-key"}, path_prefix="/openai/v1", api_style="azure") as emu:
        emu.seed()
        ok = call(http, emu, "GET", "/batches", key=None, headers={"api-key": "az-key"})
        wrong = call(http, emu, "GET", "/batches", key=None, headers={"api-key": "nope"})
    assert ok.status == 200
    assert wrong.status == 401


# -- routing and headers -----------------------------------------------------------------


def test_every_answer_has_request_id_and_json_type(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    batch_id = emu.seed()["id"]
    responses = [
        call(http, emu, "GET", f"/batches/{batch_id}"),
        call(http, emu, "GET", "/batches/batch_missing"),
        call(http, emu, "GET", "/batches", key="bad"),
        call(http, emu, "GET", "/nothing/here"),
        control(http, emu, "GET", "/health"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(r.headers["content-type"] == "application/json" for r in responses)


def test_unknown_route_is_404_and_wrong_method_405(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    unknown = call(http, emu, "GET", "/files")
    wrong = call(http, emu, "GET", "/batches/batch_1/cancel")

    assert unknown.status == 404
    assert error_of(unknown)["message"] == "Invalid URL (GET /v1/files)"
    assert wrong.status == 405
    assert wrong.headers["allow"] == "POST"


def test_request_log_records_what_was_sent(emu: OpenAIEmulator, http: urllib3.PoolManager) -> None:
    call(
        http,
        emu,
        "GET",
        "/batches",
        fields={"limit": "5"},
        headers={"OpenAI-Organization": "org-1", "OpenAI-Project": "proj-1"},
    )
    (entry,) = emu.requests
    assert (entry.method, entry.path, entry.query, entry.status) == (
        "GET",
        "/v1/batches",
        {"limit": "5"},
        200,
    )
    assert (entry.organization, entry.project) == ("org-1", "proj-1")
    assert entry.header("Authorization") == f"Bearer {KEY}"


# -- faults ------------------------------------------------------------------------------


def test_429_fault_carries_retry_headers_then_clears(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.inject(Fault("status", status=429, retry_after=1, retry_after_ms=250))

    limited = call(http, emu, "GET", "/batches")
    after = call(http, emu, "GET", "/batches")

    assert limited.status == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["retry-after-ms"] == "250"
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    assert after.status == 200
    assert emu.fault_counts == {"429": 1}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_fault(emu: OpenAIEmulator, http: urllib3.PoolManager, status: int) -> None:
    emu.inject(Fault("status", status=status))
    response = call(http, emu, "GET", "/batches")
    assert response.status == status
    assert error_of(response)["type"] == "server_error"


def test_times_n_fires_n_times_and_filters_by_method_and_path(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    batch_id = emu.seed()["id"]
    emu.inject(Fault("status", method="POST", path_regex=r"/cancel$", times=2, status=503))

    statuses = [call(http, emu, "GET", f"/batches/{batch_id}").status]
    statuses += [call(http, emu, "POST", f"/batches/{batch_id}/cancel").status for _ in range(3)]

    assert statuses == [200, 503, 503, 200]
    assert emu.get(batch_id)["status"] == "cancelling"  # type: ignore[index]


def test_forever_fault_with_seeded_probability(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.inject(Fault("status", status=503, times=None, probability=0.5, seed=7))
    statuses = [call(http, emu, "GET", "/batches").status for _ in range(40)]
    assert 0 < statuses.count(503) < 40
    assert emu.fault_counts == {"503": statuses.count(503)}
    emu.clear_faults()
    assert call(http, emu, "GET", "/batches").status == 200


def test_delay_fault_trips_the_client_read_timeout(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    batch_id = emu.seed()["id"]
    emu.inject(Fault("delay", delay_seconds=0.6))

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        call(http, emu, "POST", f"/batches/{batch_id}/cancel", timeout=urllib3.Timeout(read=0.2))

    # The request itself was handled: only its answer came too late.
    assert emu.get(batch_id)["status"] == "cancelling"  # type: ignore[index]
    assert call(http, emu, "GET", f"/batches/{batch_id}").status == 200


@pytest.mark.parametrize(
    ("kind", "reason"), [("drop", "RemoteDisconnected"), ("reset", "ConnectionResetError")]
)
def test_dropped_and_reset_connections_raise_in_the_client(
    emu: OpenAIEmulator, http: urllib3.PoolManager, kind: str, reason: str
) -> None:
    emu.inject(Fault(kind))

    with pytest.raises(urllib3.exceptions.ProtocolError) as raised:
        call(http, emu, "GET", "/batches")

    assert reason in repr(raised.value)
    assert emu.requests[-1].status is None
    assert call(http, emu, "GET", "/batches").status == 200


def test_malformed_and_html_bodies(emu: OpenAIEmulator, http: urllib3.PoolManager) -> None:
    emu.inject(Fault("malformed"))
    emu.inject(Fault("html"))

    malformed = call(http, emu, "GET", "/batches")
    html = call(http, emu, "GET", "/batches")

    assert malformed.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.data)
    assert html.status == 502
    assert html.headers["content-type"].startswith("text/html")
    assert html.data.lstrip().startswith(b"<html>")


def test_chaos_counts_what_the_client_saw(emu: OpenAIEmulator) -> None:
    emu.inject_chaos(rate=0.5, seed=3, read_timeout=0.2)
    pool = urllib3.PoolManager(maxsize=16, retries=False, timeout=urllib3.Timeout(read=0.2))

    def one(_: int) -> str:
        try:
            response = call(pool, emu, "GET", "/batches")
        except urllib3.exceptions.ReadTimeoutError:
            return "delay"
        except urllib3.exceptions.ProtocolError:
            return "reset"
        if response.status != 200:
            return str(response.status)
        try:
            json.loads(response.data)
        except ValueError:
            return "malformed"
        return "ok"

    with ThreadPoolExecutor(16) as executor:
        seen = Counter(executor.map(one, range(80)))
    pool.clear()

    injected = emu.fault_counts
    assert seen.pop("ok") == 80 - sum(injected.values())
    assert dict(seen) == injected
    assert len(injected) >= 4  # a reasonable mix, not one kind over and over


# -- control plane -----------------------------------------------------------------------


def test_control_plane_drives_the_emulator_over_http(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    seeded = json.loads(
        control(http, emu, "POST", "/seed", {"batches": [{"batch_id": "batch_a"}, {}]}).data
    )
    counted = json.loads(control(http, emu, "POST", "/seed", {"count": 3, "status": "failed"}).data)
    assert seeded[0]["id"] == "batch_a"
    assert [b["status"] for b in counted] == ["failed"] * 3
    assert len(emu.batches()) == 5

    fault = {"kind": "status", "status": 429, "retry_after": 0, "times": None}
    assert control(http, emu, "POST", "/faults", fault).status == 204
    assert call(http, emu, "GET", "/batches").status == 429
    assert control(http, emu, "DELETE", "/faults").status == 204
    assert call(http, emu, "GET", "/batches").status == 200
    assert json.loads(control(http, emu, "GET", "/fault_counts").data) == {"429": 1}
    assert control(http, emu, "POST", "/faults", {"kind": "nope"}).status == 400
    assert control(http, emu, "POST", "/faults", {"kind": "drop", "x": 1}).status == 400

    config = {"latency_seconds": 0.0, "cancel_delay_seconds": 0, "api_keys": ["sk-two"]}
    assert json.loads(control(http, emu, "POST", "/config", config).data)["api_key_count"] == 1
    cancel = call(http, emu, "POST", "/batches/batch_a/cancel", key="sk-two")
    assert json.loads(cancel.data)["status"] == "cancelled"
    assert json.loads(control(http, emu, "GET", "/batches/batch_a").data)["status"] == "cancelled"
    assert control(http, emu, "GET", "/batches/batch_zzz").status == 404

    log = json.loads(control(http, emu, "GET", "/requests").data)
    assert [(r["method"], r["status"]) for r in log][-1] == ("POST", 200)
    assert all(isinstance(r["body"], str) for r in log)

    assert control(http, emu, "POST", "/reset").status == 204
    assert emu.batches() == []
    assert emu.requests == []
    assert emu.fault_counts == {}
    assert control(http, emu, "GET", "/nope").status == 404


# -- concurrency, process ----------------------------------------------------------------


def test_parallel_keep_alive_requests_do_not_queue_behind_latency() -> None:
    with OpenAIEmulator(api_keys={KEY}, cancel_delay_seconds=60) as emu:
        emu.latency_seconds = 0.05
        ids = [b["id"] for b in emu.seed_many(64)]
        pool = urllib3.PoolManager(maxsize=64, retries=False)
        started = time.perf_counter()
        with ThreadPoolExecutor(64) as executor:
            statuses = list(
                executor.map(lambda i: call(pool, emu, "POST", f"/batches/{i}/cancel").status, ids)
            )
        elapsed = time.perf_counter() - started
        pool.clear()
        assert statuses == [200] * 64
        assert all(b["status"] == "cancelling" for b in emu.batches())
    print(f"64 parallel cancels at 50 ms latency took {elapsed:.2f}s (serial: 3.2s)")


def test_cli_serves_until_sigterm(http: urllib3.PoolManager) -> None:
    command = ["-m", "infra.openai_emulator", "--port", "0", "--api-key", "sk-cli", "--seed", "2"]
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"OpenAI emulator listening on (http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        response = http.request(
            "GET", match.group(1) + "/batches", headers={"Authorization": "Bearer sk-cli"}
        )
        assert len(json.loads(response.data)["data"]) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stop_releases_the_port_and_keep_alive_connections(http: urllib3.PoolManager) -> None:
    emu = OpenAIEmulator(api_keys={KEY}).start()
    assert call(http, emu, "GET", "/batches").status == 200  # leaves a pooled connection open
    base_url = emu.base_url
    emu.stop()
    emu.stop()  # idempotent
    with pytest.raises(urllib3.exceptions.HTTPError):
        http.request("GET", base_url + "/batches", timeout=1.0)

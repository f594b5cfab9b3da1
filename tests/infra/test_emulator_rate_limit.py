"""The emulator's rate limit, as clients see it over real sockets: a token bucket shared by
every caller, OpenAI's 429 and `x-ratelimit-*` headers, and counters on the control route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from infra.openai_emulator import OpenAIEmulator
from infra.openai_emulator.rate_limit import duration
from tests.infra.test_openai_emulator import KEY, FakeClock, call, control

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={KEY}, clock=clock) as emulator:
        emulator.seed_many(3)
        yield emulator


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()


def snapshot(http: urllib3.PoolManager, emu: OpenAIEmulator) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(control(http, emu, "GET", "/rate_limit").data)
    return answer


def test_off_by_default_no_headers_and_no_429(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    answers = [call(http, emu, "GET", "/batches") for _ in range(20)]

    assert {a.status for a in answers} == {200}
    assert all("x-ratelimit-limit-requests" not in a.headers for a in answers)
    counted = snapshot(http, emu)
    assert counted["enabled"] is False
    assert counted["counts"] == {"requests": 20, "limited": 0}


def test_over_the_burst_is_a_429_in_openais_shape_until_the_bucket_refills(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    assert (
        control(http, emu, "POST", "/rate_limit", {"requests_per_second": 2, "burst": 3}).status
        == 200
    )

    passed = [call(http, emu, "GET", "/batches") for _ in range(3)]
    limited = call(http, emu, "GET", "/batches")
    clock.advance(0.5)  # one token back at 2 a second
    again = call(http, emu, "GET", "/batches")

    assert [a.status for a in passed] == [200, 200, 200]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in passed] == ["2", "1", "0"]
    assert passed[0].headers["x-ratelimit-limit-requests"] == "3"
    assert passed[2].headers["x-ratelimit-reset-requests"] == "1.5s"
    assert limited.status == 429
    error = json.loads(limited.data)["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Rate limit reached for requests")
    assert limited.headers["retry-after-ms"] == "500"
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert again.status == 200


def test_the_bucket_is_shared_by_every_caller_and_path(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.rate_limit.configure(1.0, burst=2)
    other = urllib3.PoolManager(retries=False)
    batch_id = emu.batches()[0]["id"]

    first = call(http, emu, "GET", "/batches")
    second = other.request(
        "POST",
        emu.base_url + f"/batches/{batch_id}/cancel",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    third = call(http, emu, "GET", f"/batches/{batch_id}")

    assert (first.status, second.status, third.status) == (200, 200, 429)
    # A 429 is an answer like any other: logged, and not a cancel.
    assert [(r.status, r.retry_after_ms) for r in emu.requests] == [
        (200, None),
        (200, None),
        (429, 1000),
    ]
    batch = emu.get(batch_id)
    assert batch is not None
    assert batch["status"] in ("cancelling", "cancelled")


def test_counters_per_second_and_their_reset(
    emu: OpenAIEmulator, http: urllib3.PoolManager, clock: FakeClock
) -> None:
    emu.rate_limit.configure(1.0, burst=1)
    call(http, emu, "GET", "/batches")
    call(http, emu, "GET", "/batches")
    clock.advance(1.0)
    call(http, emu, "GET", "/batches")

    counted = snapshot(http, emu)
    assert counted["enabled"] is True
    assert counted["counts"] == {"requests": 3, "limited": 1}
    seconds = counted["per_second"]
    assert [(s["requests"], s["limited"]) for s in seconds] == [(2, 1), (1, 0)]
    assert seconds[1]["second"] - seconds[0]["second"] == 1
    assert all(s["max_in_flight"] >= 1 for s in seconds)

    assert control(http, emu, "DELETE", "/rate_limit/counts").status == 204
    assert snapshot(http, emu)["counts"] == {"requests": 0, "limited": 0}
    # The limit itself stays as set.
    assert snapshot(http, emu)["requests_per_second"] == 1.0


def test_control_route_turns_it_off_and_rejects_nonsense(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.rate_limit.configure(1.0, burst=1)
    call(http, emu, "GET", "/batches")
    assert call(http, emu, "GET", "/batches").status == 429

    assert control(http, emu, "POST", "/rate_limit", {"requests_per_second": None}).status == 200
    assert call(http, emu, "GET", "/batches").status == 200
    assert control(http, emu, "POST", "/rate_limit", {"requests_per_second": 0}).status == 400
    assert control(http, emu, "POST", "/rate_limit", {"rps": 5}).status == 400
    assert (
        control(http, emu, "POST", "/rate_limit", {"requests_per_second": 5, "burst": 0}).status
        == 400
    )


def test_control_routes_are_not_rate_limited(
    emu: OpenAIEmulator, http: urllib3.PoolManager
) -> None:
    emu.rate_limit.configure(1.0, burst=1)
    assert {control(http, emu, "GET", "/health").status for _ in range(5)} == {200}
    assert snapshot(http, emu)["counts"]["requests"] == 0


def test_in_flight_counts_requests_waiting_out_their_latency() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with OpenAIEmulator(api_keys={KEY}, latency_seconds=0.5) as emu:
        pool = urllib3.PoolManager(retries=False, maxsize=8)
        with ThreadPoolExecutor(8) as workers:
            list(workers.map(lambda _: call(pool, emu, "GET", "/batches").status, range(8)))
        most = max(s["max_in_flight"] for s in emu.rate_limit.snapshot()["per_second"])
    # Eight requests sent at once each wait 0.5 s: more than one is in flight at a time.
    assert most > 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.12, "120ms"),
        (0.0001, "1ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (360.0, "6m0s"),
        (61.25, "1m1.25s"),
    ],
)
def test_durations_are_written_like_openais(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_cli_flag_and_env_set_the_limit() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.openai_emulator", "--port", "0", "--burst", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPENAI_EMULATOR_RATE_LIMIT": "0.5"},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().split()[-1]
        pool = urllib3.PoolManager(retries=False)
        limit = json.loads(
            pool.request("GET", base_url.removesuffix("/v1") + "/_emulator/rate_limit").data
        )
    finally:
        process.terminate()
        process.wait(10)
    assert (limit["requests_per_second"], limit["burst"]) == (0.5, 2.0)

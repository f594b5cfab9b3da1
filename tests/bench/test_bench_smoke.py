"""The bench harness at tiny sizes: every section runs and produces positive numbers, the tables
print, the JSON is written. No timing thresholds: `make bench` is where numbers mean something."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

# The SDK baseline needs the `bench` extra, which `make venv` installs: a missing SDK fails.
import openai  # noqa: F401
import pytest

from tests.bench.report import Cell, Section
from tests.bench.run import SECTIONS, run_bench
from tests.bench.sizes import SMOKE


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _leading_number(cell: Cell) -> float:
    """A printed cell such as "1.234 ms", "526" or "0.48" as its number."""
    return float(str(cell).replace(",", "").split()[0])


def _assert_one_core_bound(throughput: Section) -> None:
    """The boto3 floor is measured, and the one-core bounds built from it print as numbers."""
    data = throughput.data
    assert all(_positive(data["boto3_floor_ms_per_call"][v]) for v in ("on", "off"))
    bounds = data["one_core_bound"]
    assert {"bare", "bare_plus_1_write", "bare_plus_2_writes", "function_steps"} <= set(bounds)
    assert all(_positive(b[k]) for b in bounds.values() for k in ("cpu_ms_per_id", "max_over_bare"))
    # Each minimal write adds CPU, so each bound is at most the one before it.
    one, two = bounds["bare_plus_1_write"], bounds["bare_plus_2_writes"]
    assert bounds["bare"]["max_over_bare"] >= one["max_over_bare"] >= two["max_over_bare"]
    rows = {str(row[0]): row for table in throughput.tables for row in table.rows}
    # The name, then numbers: CPU on, off (steps table); CPU, cancels/s, at most, measured.
    numeric = {
        "boto3 floor per call": 2,
        "bare + 1 minimal UpdateItem": 3,
        "bare + 2 minimal UpdateItems": 3,
        "function, as run": 4,
    }
    for name, count in numeric.items():
        cells = rows[name][1 : 1 + count]
        assert all(_positive(_leading_number(cell)) for cell in cells), rows[name]
    assert all("one-core bound, measured" in goal.reference for goal in throughput.goals)


def _assert_webhooks(section: Section) -> None:
    """Both modes measured, every batch timed; no status-check GET after a webhook."""
    data = section.data
    assert set(data["seconds"]) == {"polling only", "webhooks"}
    assert all(len(v) == SMOKE.webhook_ids for v in data["seconds"].values())
    assert all(_positive(data["stats"][mode]["p95"]) for mode in data["stats"])
    assert all(
        data["openai_calls"][mode]["POST cancel"] == SMOKE.webhook_ids
        for mode in data["openai_calls"]
    )
    assert all(_positive(sum(calls.values())) for calls in data["aws_calls"].values())
    assert data["aws_calls"]["webhooks"]["SQS.SendMessage"] >= SMOKE.webhook_ids  # the receiver's
    assert data["ended_by_webhook"] >= 1
    assert data["status_check_gets_after_webhook"] == 0
    assert [goal.measured for goal in section.goals][2] == 0


@pytest.mark.timeout(180)
def test_every_bench_section_produces_numbers_and_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    out = io.StringIO()
    results_path = tmp_path / "results.json"

    sections = {section.key: section for section in run_bench(SMOKE, SECTIONS, results_path, out)}

    assert list(sections) == list(SECTIONS)
    assert all(section.error is None for section in sections.values()), [
        section.error for section in sections.values()
    ]
    cold = sections["cold_start"].data["median"]
    assert all(
        _positive(cold[v][k]) for v in ("project", "sdk") for k in ("total_seconds", "peak_rss_mib")
    )
    throughput = sections["throughput"].data["per_second"]
    assert len(throughput) == 3
    assert all(_positive(rate) for rate in throughput.values())
    _assert_one_core_bound(sections["throughput"])
    cpu = sections["cpu"].data["cpu_ms_per_call"]
    assert all(_positive(ms) for ms in cpu.values())
    e2e = sections["end_to_end"].data
    assert e2e["ids"] == SMOKE.e2e_ids
    assert e2e["aws_calls"]["DynamoDB.UpdateItem"] > 0
    assert _positive(e2e["cost_usd_per_1000"])
    _assert_webhooks(sections["webhooks"])
    goals = [g for key, section in sections.items() if key != "webhooks" for g in section.goals]
    assert len(goals) == 4
    assert all(_positive(goal.measured) for goal in goals)

    printed = out.getvalue()
    titles = (
        "Cold start",
        "Throughput",
        "Client CPU per cancel",
        "End to end",
        "Webhooks",
        "Summary",
    )
    for title in titles:
        assert title in printed
    assert "MET" in printed
    saved = json.loads(results_path.read_text())
    assert set(saved["sections"]) == set(SECTIONS)
    assert len(saved["goals"]) == 7


@pytest.mark.timeout(120)
def test_the_cpu_per_id_section_runs_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--only cpu_per_id`: not in the default sections, its rows and two goals all numbers.
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    (section,) = run_bench(SMOKE, ["cpu_per_id"], tmp_path / "results.json", io.StringIO())
    assert section.error is None, section.error
    data = section.data
    keys = ("as_run_ms", "steps_sum_ms", "steps_in_sequence_ms", "bare_ms")
    assert all(_positive(data[key]) for key in keys)
    assert len(section.goals) == 2
    assert all(_positive(goal.measured) for goal in section.goals)
    assert "cpu_per_id" not in SECTIONS

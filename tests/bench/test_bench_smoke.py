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

from tests.bench.run import SECTIONS, run_bench
from tests.bench.sizes import SMOKE


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.timeout(120)
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
    cpu = sections["cpu"].data["cpu_ms_per_call"]
    assert all(_positive(ms) for ms in cpu.values())
    e2e = sections["end_to_end"].data
    assert e2e["ids"] == SMOKE.e2e_ids
    assert e2e["aws_calls"]["DynamoDB.UpdateItem"] > 0
    assert _positive(e2e["cost_usd_per_1000"])
    goals = [goal for section in sections.values() for goal in section.goals]
    assert len(goals) == 4
    assert all(_positive(goal.measured) for goal in goals)

    printed = out.getvalue()
    for title in ("Cold start", "Throughput", "Client CPU per cancel", "End to end", "Summary"):
        assert title in printed
    assert "MET" in printed
    saved = json.loads(results_path.read_text())
    assert set(saved["sections"]) == set(SECTIONS)
    assert len(saved["goals"]) == 4

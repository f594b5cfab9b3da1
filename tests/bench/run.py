"""`make bench`: cold start, throughput, client CPU and end-to-end cost, as ratios measured in
one run, printed as tables and written to .bench/results.json.

A report, not a gate: goals are printed MET / NOT MET and the exit status is 0 either way;
it is non-zero only when the harness itself fails (a server that does not start, a section
that cannot finish).

    python -m tests.bench.run                   # everything (about 5 minutes on 2 cores)
    python -m tests.bench.run --only cpu,throughput
    python -m tests.bench.run --quick           # tiny sizes: proves the harness, means nothing
    python -m tests.bench.run --only cpu_per_id  # CPU per cancelled ID only (not in the default)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TextIO

from tests.bench.aws import prepare_environment
from tests.bench.report import Section, section_json, summary_table, write_json
from tests.bench.servers import BENCH_DIR, Servers
from tests.bench.sizes import FULL, SMOKE, Sizes

SECTIONS = ("cold_start", "throughput", "cpu", "end_to_end", "webhooks")
# Sections run only when --only names them (cpu_per_id repeats rows of throughput, without moto).
EXTRA_SECTIONS = ("cpu_per_id",)
DEFAULT_JSON = BENCH_DIR / "results.json"
PACKAGES = ("openai", "boto3", "botocore", "urllib3", "aws-lambda-powertools", "moto")


def environment() -> dict[str, object]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": {name: version(name) for name in PACKAGES},
    }


def run_bench(
    sizes: Sizes,
    sections: Sequence[str] = SECTIONS,
    json_path: Path = DEFAULT_JSON,
    out: TextIO = sys.stdout,
) -> list[Section]:
    """Run the sections against one set of servers; print each table as it is ready.
    The environment must be prepared (`prepare_environment`) before the function is imported."""
    env = environment()
    print(
        f"batch-canceller bench, {env['started_at']}: Python {env['python']}, {env['cpus']} CPUs,"
        f" load average {env['load_average_at_start']} at start; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),  # type: ignore[attr-defined]
        file=out,
        flush=True,
    )
    print("Goals are ratios measured in this run: a report, not a gate.\n", file=out, flush=True)
    results: list[Section] = []
    with Servers() as servers:
        for key in sections:
            print(f"[bench] running {key} ...", file=sys.stderr, flush=True)
            module = importlib.import_module(f"tests.bench.{key}")
            started = time.perf_counter()
            try:
                section: Section = module.run(servers, sizes)
            except Exception:
                section = Section(key, error=traceback.format_exc())
            section.data["section_seconds"] = time.perf_counter() - started
            results.append(section)
            print(section.render() + "\n", file=out, flush=True)
    print(summary_table(results).render(), file=out, flush=True)
    write_json(
        json_path,
        {
            "environment": env,
            "sizes": dataclasses.asdict(sizes),
            "sections": {section.key: section_json(section) for section in results},
            "goals": [
                {**dataclasses.asdict(goal), "met": goal.met}
                for section in results
                for goal in section.goals
            ],
        },
    )
    print(f"\nresults written to {json_path}", file=out, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (harness check)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where results go")
    parser.add_argument("--e2e-ids", type=int, help="IDs in the end-to-end run")
    parser.add_argument("--cold-runs", type=int, help="cold starts per variant")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS) - set(EXTRA_SECTIONS)
    if unknown:
        known = ", ".join(SECTIONS + EXTRA_SECTIONS)
        parser.error(f"unknown sections {sorted(unknown)}; choose from {known}")
    sizes = SMOKE if args.quick else FULL
    if args.e2e_ids:
        sizes = dataclasses.replace(sizes, e2e_ids=args.e2e_ids)
    if args.cold_runs:
        sizes = dataclasses.replace(sizes, cold_runs=args.cold_runs)
    prepare_environment()
    try:
        results = run_bench(sizes, sections, args.json)
    except Exception:
        traceback.print_exc()
        print("bench harness failed", file=sys.stderr)
        return 2
    return 1 if any(section.error is not None for section in results) else 0


if __name__ == "__main__":
    sys.exit(main())

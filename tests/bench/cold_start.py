"""Cold start: import of the handler module plus its first invocation, in a fresh process each
time, for the project's handler and for the same function on the `openai` SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

from tests.bench.aws import REGION, create_stack, sqs_event
from tests.bench.report import Goal, Section, Table, median, ms, ratio
from tests.bench.servers import BENCH_API_KEY, BENCH_DIR, ROOT, Servers, child_env
from tests.bench.sizes import Sizes

VARIANTS = {
    "project": "batch_canceller.handler",
    "sdk": "tests.bench.sdk_function",
}
CHILD = ROOT / "tests" / "bench" / "cold_child.py"
CHILD_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class ColdRun:
    variant: str
    import_seconds: float
    invoke_seconds: float
    total_seconds: float
    process_seconds: float  # the child's whole life, interpreter start and exit included
    peak_rss_mib: float
    cpu_seconds: float
    modules_loaded: int


def run(servers: Servers, sizes: Sizes) -> Section:
    stack = create_stack(servers.moto.url, BENCH_API_KEY)
    servers.emulator.configure(latency_seconds=0.0, cancel_delay_seconds=0.0)
    env = child_env(
        **stack.env(servers.emulator.base_url),
        AWS_ENDPOINT_URL=servers.moto.url,
        AWS_REGION=REGION,
        POWERTOOLS_SERVICE_NAME="batch-canceller",
        POWERTOOLS_METRICS_NAMESPACE="BatchCanceller",
        LOG_LEVEL="INFO",
        # Both variants read bytecode from one warm cache (written by the warm-up runs).
        PYTHONPYCACHEPREFIX=str(BENCH_DIR / "pycache"),
    )
    for name in ("PYTHONDONTWRITEBYTECODE", "POWERTOOLS_LOG_LEVEL"):
        env.pop(name, None)
    workdir = BENCH_DIR / "cold"
    workdir.mkdir(parents=True, exist_ok=True)

    def once(variant: str, index: int) -> ColdRun:
        (batch_id,) = servers.emulator.seed(1)
        event_path = workdir / f"event-{variant}-{index}.json"
        result_path = workdir / f"result-{variant}-{index}.json"
        event_path.write_text(json.dumps(sqs_event(json.dumps({"batch_ids": [batch_id]}))))
        result_path.unlink(missing_ok=True)
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, str(CHILD), VARIANTS[variant], str(event_path), str(result_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=CHILD_TIMEOUT_SECONDS,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if child.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"{variant} cold start failed:\n{child.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(result_path.read_text())
        if result["answer"] != {"batchItemFailures": []}:
            raise RuntimeError(f"{variant} first invocation failed: {result['answer']}")
        return ColdRun(
            variant=variant,
            import_seconds=result["import_seconds"],
            invoke_seconds=result["invoke_seconds"],
            total_seconds=result["total_seconds"],
            process_seconds=elapsed,
            peak_rss_mib=result["peak_rss_kib"] / 1024,
            cpu_seconds=result["cpu_seconds"],
            modules_loaded=result["modules_loaded"],
        )

    if sizes.cold_warmup:
        for variant in VARIANTS:
            once(variant, -1)
    runs: list[ColdRun] = []
    for index in range(sizes.cold_runs):
        # Alternate the order so that drift in the machine's load hits both alike.
        order = list(VARIANTS) if index % 2 == 0 else list(reversed(VARIANTS))
        runs.extend(once(variant, index) for variant in order)
    return _section(runs, sizes)


def _section(runs: list[ColdRun], sizes: Sizes) -> Section:
    def med(variant: str, attribute: str) -> float:
        return median([getattr(r, attribute) for r in runs if r.variant == variant])

    table = Table(
        f"Cold start: import of the handler module + first invocation "
        f"(fresh process each, median of {sizes.cold_runs})",
        [
            "variant",
            "import",
            "1st invocation",
            "import + 1st",
            "process wall",
            "peak RSS",
            "CPU",
            "modules",
        ],
    )
    labels = {
        "project": "project (urllib3 client)",
        "sdk": f"openai SDK {version('openai')} baseline",
    }
    for variant, label in labels.items():
        table.add(
            label,
            ms(med(variant, "import_seconds")),
            ms(med(variant, "invoke_seconds")),
            ms(med(variant, "total_seconds")),
            ms(med(variant, "process_seconds")),
            f"{med(variant, 'peak_rss_mib'):.1f} MiB",
            ms(med(variant, "cpu_seconds")),
            int(med(variant, "modules_loaded")),
        )
    ratios = {
        attribute: ratio(med("project", attribute), med("sdk", attribute))
        for attribute in (
            "import_seconds",
            "invoke_seconds",
            "total_seconds",
            "process_seconds",
            "peak_rss_mib",
            "cpu_seconds",
            "modules_loaded",
        )
    }
    table.add(
        "ratio project / SDK",
        *(f"{ratios[a]:.2f}x" for a in ratios),
    )
    table.notes.extend(
        [
            "1st invocation = one SQS record (one message, one batch ID) through the real handler:"
            " key from Secrets Manager, boto3 clients built, POST .../cancel on the emulator"
            " (latency 0, cancelled at once), UpdateItem + PutEvents + UpdateItem on moto",
            "the SDK baseline is the same function (boto3, Powertools, processor, store) with the"
            " cancel done by openai.OpenAI(base_url=..., api_key=...).batches.cancel(id)",
            "timed inside the child from just before the import; 'process wall' adds interpreter"
            " start and exit; bytecode from a warm cache (one discarded warm-up run per variant)",
            "emulator and moto run in their own processes",
        ]
    )
    goal = Goal(
        "cold start (import + 1st invocation), project / SDK",
        ratios["total_seconds"],
        0.45,
        "<=",
        "urllib3+boto3+Powertools import ~0.41 of the SDK-based one",
    )
    return Section(
        "cold_start",
        tables=[table],
        goals=[goal],
        data={
            "runs": [asdict(r) for r in runs],
            "median": {
                variant: {
                    attribute: med(variant, attribute)
                    for attribute in asdict(runs[0])
                    if attribute != "variant"
                }
                for variant in VARIANTS
            },
            "ratios_project_over_sdk": ratios,
        },
    )

"""`python -m tests.load [--ids 20000] [--workers 8] [--rate 200] [--burst B] [--latency S]`.

20,000 IDs through the local stack by K concurrent worker processes against the emulator
limited to R requests/s, in one run twice: with the adaptive client, then with
ADAPTIVE_CONCURRENCY=false (a fixed MAX_IN_FLIGHT of 32). Each mode gets fresh servers.
Prints a table per mode, writes it to .bench/load.txt and draws docs/load.png. Exit status
1 if the adaptive mode lost a batch or dead-lettered a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tests.load.config import REPO_ROOT, LoadConfig, template_timeout
from tests.load.measure import summarise
from tests.load.plot import draw
from tests.load.report import correct, render
from tests.load.run import run_mode


def _parser() -> argparse.ArgumentParser:
    defaults = LoadConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tests.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--ids", type=int, default=defaults.ids)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="requests/s")
    parser.add_argument("--burst", type=float, default=None, help="tokens (default: R)")
    parser.add_argument("--latency", type=float, default=defaults.latency, help="seconds")
    parser.add_argument("--ids-per-command", type=int, default=defaults.ids_per_command)
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per mode")
    parser.add_argument(
        "--modes", default="adaptive,fixed", help="comma-separated: adaptive, fixed"
    )
    parser.add_argument("--png", type=Path, default=REPO_ROOT / "docs" / "load.png")
    parser.add_argument("--table", type=Path, default=REPO_ROOT / ".bench" / "load.txt")
    parser.add_argument("--keep-logs", action="store_true")
    return parser


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through every cleanup

    signal.signal(signal.SIGTERM, on_sigterm)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    config = LoadConfig(
        ids=args.ids,
        workers=args.workers,
        rate=args.rate,
        burst=args.burst,
        latency=args.latency,
        ids_per_command=args.ids_per_command,
        function_timeout=template_timeout(),
        time_limit=args.time_limit,
    )

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    work_dir = Path(tempfile.mkdtemp(prefix="load-"))
    say(f"load run: {config.describe()}; logs in {work_dir}")
    results = []
    for mode in args.modes.split(","):
        raw = run_mode(config, mode == "adaptive", work_dir / mode, say)
        results.append(summarise(raw, config.rate))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = [f"make load, {stamp}, commit {_commit()}, {os.cpu_count()} cores", config.describe()]
    footer = [
        "",
        "goodput: API answers other than 429 per second, from the first command sent to the last"
        " record stored cancelled, over R; p50/p95: per ID, the command's send time to the"
        " record's updated_at when it became cancelled; past deadline: invocations the worker"
        " stopped at the deadline (the template's Timeout); lost: IDs whose record is not"
        " cancelled at the end.",
    ]
    table = render(results, header, footer)
    print(table, flush=True)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(table + "\n")
    # Every figure and the per-second series, for a closer look than the table gives.
    args.table.with_suffix(".json").write_text(
        json.dumps([dataclasses.asdict(r) for r in results], indent=1) + "\n"
    )
    title = f"make load: {config.ids} IDs, {config.workers} workers, R = {config.rate:g}/s, latency {config.latency * 1000:g} ms ({stamp})"
    draw(results, config.rate, args.png, title)
    say(f"table: {args.table}; plot: {args.png}")
    adaptive = next((r for r in results if r.mode == "adaptive"), None)
    ok = adaptive is None or correct(adaptive)
    if ok and not args.keep_logs:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        say(f"logs: {work_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

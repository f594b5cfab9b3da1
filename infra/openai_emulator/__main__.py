"""`python -m infra.openai_emulator`: run the emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from infra.openai_emulator.server import OpenAIEmulator
from infra.servers import StopSignal

logger = logging.getLogger("infra.openai_emulator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.openai_emulator", description="Local OpenAI Batch API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accepted key (repeatable)"
    )
    parser.add_argument("--cancel-delay", type=float, default=2.0, help="seconds in cancelling")
    parser.add_argument("--prefix", default="/v1", help="API path prefix, e.g. /openai")
    parser.add_argument("--style", choices=("openai", "azure"), default="openai")
    parser.add_argument("--seed", type=int, default=0, help="seed N in_progress batches")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=_env_float("OPENAI_EMULATOR_RATE_LIMIT"),
        help="requests/s shared by all callers, over it 429 (default: no limit)",
    )
    parser.add_argument(
        "--burst",
        type=float,
        default=_env_float("OPENAI_EMULATOR_BURST"),
        help="requests the bucket lets through at once (default: one second's worth)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    stop = StopSignal()
    emulator = OpenAIEmulator(
        api_keys=args.api_keys or ["sk-test"],
        cancel_delay_seconds=args.cancel_delay,
        port=args.port,
        path_prefix=args.prefix,
        api_style=args.style,
        host=args.host,
        latency_seconds=args.latency,
        rate_limit=args.rate_limit,
        burst=args.burst,
    )
    with emulator:
        for batch in emulator.seed_many(args.seed):
            logger.info("seeded %s", batch["id"])
        # The one stdout line: wrappers wait for it to know the port is open.
        print(f"OpenAI emulator listening on {emulator.base_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

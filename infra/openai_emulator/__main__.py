"""`python -m infra.openai_emulator`: run the emulator until SIGINT or SIGTERM.

Webhooks: `--webhook-url` (or $OPENAI_EMULATOR_WEBHOOK_URL) and the secret in
$OPENAI_EMULATOR_WEBHOOK_SECRET (an environment variable, not a flag: flags show in `ps`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from infra.openai_emulator.server import OpenAIEmulator
from infra.openai_emulator.webhook_settings import WebhookSettings
from infra.servers import StopSignal

logger = logging.getLogger("infra.openai_emulator")

WEBHOOK_URL_ENV = "OPENAI_EMULATOR_WEBHOOK_URL"
WEBHOOK_SECRET_ENV = "OPENAI_EMULATOR_WEBHOOK_SECRET"  # noqa: S105 - a variable's name


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
    hooks = parser.add_argument_group("webhooks (sent on every change to a terminal status)")
    defaults = WebhookSettings()
    hooks.add_argument(
        "--webhook-url", default=os.environ.get(WEBHOOK_URL_ENV) or None,
        help=f"where to POST them (default ${WEBHOOK_URL_ENV}; none: not sent)",
    )  # fmt: skip
    hooks.add_argument("--webhook-max-attempts", type=int, default=defaults.max_attempts)
    hooks.add_argument(
        "--webhook-initial-backoff", type=float, default=defaults.initial_backoff_seconds,
        help="seconds before the 2nd attempt; doubles after each failed attempt",
    )  # fmt: skip
    hooks.add_argument("--webhook-max-backoff", type=float, default=defaults.max_backoff_seconds)
    hooks.add_argument("--webhook-timeout", type=float, default=defaults.timeout_seconds)
    return parser


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    secret = os.environ.get(WEBHOOK_SECRET_ENV) or None
    if args.webhook_url and secret is None:
        print(f"--webhook-url needs ${WEBHOOK_SECRET_ENV} (whsec_...)", file=sys.stderr)
        return 2
    settings = WebhookSettings(
        url=args.webhook_url,
        max_attempts=args.webhook_max_attempts,
        initial_backoff_seconds=args.webhook_initial_backoff,
        max_backoff_seconds=args.webhook_max_backoff,
        timeout_seconds=args.webhook_timeout,
    )
    stop = StopSignal()
    emulator = OpenAIEmulator(
        api_keys=args.api_keys or ["sk-test"],
        cancel_delay_seconds=args.cancel_delay,
        port=args.port,
        path_prefix=args.prefix,
        api_style=args.style,
        host=args.host,
        latency_seconds=args.latency,
        webhook_settings=settings,
        webhook_secret=secret,
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

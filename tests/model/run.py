"""`python -m tests.model.run [--examples 2000] [--steps 60]`: the model-based test's long
profile. Starts its own moto server, runs the state machine, prints what it explored."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence

from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from batch_canceller.observability import logger
from infra.servers import moto_server
from tests.model.machine import REPORT, AnnounceModel

SHOWN = (
    "examples",
    "deliveries killed",
    "twin deliveries",
    "publications",
    "ClaimsTakenOver",
    "EventPublishUnknown",
    "EventPublishFailures",
    "EventsConfirmedByReceipt",
    "PublicationReceipts",
    "StatusChecksScheduled",
    "StoreFailures",
    "TransientFailures",
    "DeadlineDeferrals",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, help="replay the run a failure report names")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logger.setLevel(logging.CRITICAL)
    # Nothing here may reach a real AWS account.
    os.environ.update(AWS_ACCESS_KEY_ID="model", AWS_SECRET_ACCESS_KEY="model")
    started = time.monotonic()
    with moto_server() as url:
        AnnounceModel.moto_url = url
        profile = settings(
            max_examples=args.examples,
            stateful_step_count=args.steps,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        if args.seed is not None:
            seed(args.seed)(AnnounceModel)
        failure: BaseException | None = None
        try:
            run_state_machine_as_test(AnnounceModel, settings=profile)
        except BaseException as exc:
            failure = exc
    print(f"model-based test of the announce protocol: {time.monotonic() - started:.0f} s")
    for name in SHOWN:
        print(f"  {name:<46} {REPORT.get(name, 0):>8}")
    print(
        f"  {'duplicates after a late or lost receipt':<46} {REPORT.get('duplicates after a late or lost receipt', 0):>8}"
    )
    print(
        f"  {'duplicates with the receipt in time (must be 0)':<46} {0 if failure is None else '?':>8}"
    )
    others = sorted(set(REPORT) - set(SHOWN) - {"duplicates after a late or lost receipt"})
    print("  also: " + ", ".join(f"{name} {REPORT[name]}" for name in others))
    if failure is not None:
        # Hypothesis attaches each falsifying sequence of steps to its exception as notes.
        traceback.print_exception(failure, limit=3, file=sys.stdout)
        print(f"FAILED: {failure!r}")
        return 1
    print("no interleaving lost an event, published one twice or regressed a record")
    return 0


if __name__ == "__main__":
    sys.exit(main())

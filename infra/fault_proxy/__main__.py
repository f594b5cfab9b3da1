"""``python -m infra.fault_proxy --upstream http://127.0.0.1:5000 --port 0``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from infra.servers import StopSignal

from .faults import Rule
from .server import FaultProxy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.fault_proxy", description=__doc__)
    parser.add_argument("--upstream", default="http://127.0.0.1:5000", help="moto server URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="JSON",
        help='repeatable, e.g. \'{"operation": "Events.PutEvents", "action": "http_error"}\'',
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    stop = StopSignal()
    with FaultProxy(args.upstream, host=args.host, port=args.port) as proxy:
        for raw in args.rule:
            proxy.add_rule(Rule(**json.loads(raw)))
        print(f"fault proxy listening on {proxy.url}", flush=True)
        stop.wait()
        calls = ", ".join(f"{op}={n}" for op, n in sorted(proxy.calls.items()))
        logging.getLogger("infra.fault_proxy").info("stopping; calls: %s", calls or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())

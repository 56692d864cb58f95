"""CLI: ``python -m dbopt.demo_data generate URL --scale S`` | ``replay URL --statements N``.

Prints what was done as JSON; a bad argument or database exits with status 2 and the reason.
"""

from __future__ import annotations

import argparse
import json
import sys

from dbopt.demo_data.errors import DemoDataError
from dbopt.demo_data.generate import generate
from dbopt.demo_data.replay import replay
from dbopt.targets import TargetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbopt.demo_data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="create the demo tables and fill them")
    gen.add_argument("url", help="postgresql://…/db, mysql://…/db or sqlite:///path.db")
    gen.add_argument("--scale", type=float, default=1.0, help="1.0 = a million rows per big table")
    gen.add_argument("--replace", action="store_true", help="drop demo tables that already exist")
    rep = sub.add_parser("replay", help="run the weighted demo workload")
    rep.add_argument("url")
    rep.add_argument("--statements", type=int, default=1000)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--scale", type=float, default=1.0, help="the scale the data was generated with")
    rep.add_argument("--time-limit", type=float, default=300.0, help="stop after this many seconds")
    rep.add_argument("--workload", default=None, help="workload YAML (default: include/demo/workload.yaml)")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            result = generate(args.url, args.scale, replace=args.replace).to_dict()
        else:
            result = replay(
                args.url, args.workload, args.statements, args.seed, scale=args.scale, time_limit_s=args.time_limit
            ).to_dict()
    except (DemoDataError, TargetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

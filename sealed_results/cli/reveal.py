"""``sealed-results reveal FLOW_RUN_ID``: a Prefect run with its sealed values opened locally.

Reads the run's parameters, states, task runs and logs from the Prefect API (read requests
only, nothing is sent back) and prints them with every sealed value the profile can open
revealed, sealed exceptions with their tracebacks. It prints secrets to your terminal: that
is its purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from sealed_results.cli.audit import prefect_module
from sealed_results.cli.common import EXIT_OK, EXIT_USAGE, add_json_option, add_profile_options
from sealed_results.config import CONFIG_ENV

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    # The adapter is imported by name at run time: Prefect is an optional extra (see
    # cli.audit.prefect_module).
    reveal = prefect_module("reveal")
    if reveal is None:
        return EXIT_USAGE
    try:
        run_id = uuid.UUID(args.flow_run_id)
    except ValueError:
        print("sealed-results: FLOW_RUN_ID is not a UUID", file=sys.stderr)
        return EXIT_USAGE
    if args.config:
        os.environ[CONFIG_ENV] = args.config
    report = reveal.reveal_run(run_id, args.profile, results=args.results)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(reveal.format_report(report))
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reveal",
        help="print a Prefect flow run with every sealed value opened locally",
        description="Fetch a flow run's parameters, states, task runs and logs from the "
        "Prefect API and print them with the sealed values this profile can open revealed.",
    )
    parser.add_argument("flow_run_id", metavar="FLOW_RUN_ID")
    add_profile_options(parser)
    parser.add_argument(
        "--results", action="store_true", help="read the results of completed states too"
    )
    add_json_option(parser)
    parser.set_defaults(func=_run)

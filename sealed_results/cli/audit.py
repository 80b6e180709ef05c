"""``sealed-results audit``: a privacy lint for Prefect flows and deployments.

Lists every path by which data would still reach Prefect's API (``sealed_results.prefect.audit``
describes each kind of finding). Exit code 1 when anything is found, 0 when nothing is, 2 when
the ``prefect`` extra is missing or the target cannot be loaded; ``--json`` for CI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from sealed_results.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_json_option

__all__ = ["PREFECT_HINT", "add_parser", "prefect_module"]

PREFECT_HINT = 'this needs the prefect extra: pip install "sealed-results[prefect]"'


def prefect_module(name: str) -> Any:
    """``sealed_results.prefect.<name>``, or None after printing the install hint.

    Imported by name at run time, on purpose: the CLI (the top layer) may use the Prefect
    adapter below it, but Prefect is an optional extra, and every other verb must keep working
    without it installed, so no CLI module imports the adapter at module level."""
    try:
        return importlib.import_module(f"sealed_results.prefect.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "prefect":
            print(f"sealed-results: {PREFECT_HINT}", file=sys.stderr)
            return None
        raise


def _run(args: argparse.Namespace) -> int:
    audit = prefect_module("audit")
    if audit is None:
        return EXIT_USAGE
    note = None
    try:
        if args.deployment:
            findings, note = audit.audit_deployment(args.target, code_root=args.code_root)
        else:
            findings = audit.audit_target(args.target, api=args.api)
    except (ImportError, OSError, SyntaxError) as exc:
        print(
            f"sealed-results: the flow could not be loaded ({type(exc).__name__})", file=sys.stderr
        )
        return EXIT_USAGE
    if args.json:
        print(
            json.dumps(
                {
                    "target": args.target,
                    "findings": [f.to_dict() for f in findings],
                    "note": note,
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            print(f"{finding.kind:<28} {finding.where}: {finding.detail}")
        if note:
            print(note)
        print(f"{len(findings)} finding(s)" if findings else "nothing reaches the API unsealed")
    return EXIT_FAILED if findings else EXIT_OK


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="list every path by which a Prefect flow's data would still reach the API",
        description="Privacy lint for Prefect: unsealed results, parameters in clear, run-name "
        "and storage-key templates, unkeyed cache policies, log_prints, exception messages.",
    )
    parser.add_argument(
        "target",
        help="a flow file or module, optionally :flow_name (flows.py:pipeline, pkg.flows), "
        "or with --deployment a deployment name (flow-name/deployment-name)",
    )
    parser.add_argument(
        "--deployment", action="store_true", help="TARGET is a deployment, read from the API"
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help="also ask the API for a server default result storage (flows only; "
        "--deployment always does)",
    )
    parser.add_argument(
        "--code-root", help="where a deployment's entrypoint is relative to (default: here)"
    )
    add_json_option(parser)
    parser.set_defaults(func=_run)

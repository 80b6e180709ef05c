"""``sealed-results seal``: a value sealed into a token for a run parameter, printed.

The value is read from standard input or a file, never from the command line (arguments land
in shell history and process listings). The token printed (``sealed:<profile>:<token>``) is
what the Prefect UI, ``run_deployment(parameters=...)`` or any orchestrator receives; the value
is stored encrypted in the profile's store. Framework-neutral: it needs no Prefect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from sealed_results.cli.common import EXIT_OK, EXIT_USAGE, add_profile_options
from sealed_results.config import CONFIG_ENV
from sealed_results.sealing import seal

__all__ = ["add_parser"]


def _read(args: argparse.Namespace) -> bytes:
    if args.file and args.file != "-":
        with open(args.file, "rb") as f:
            return f.read()
    return sys.stdin.buffer.read()


def _run(args: argparse.Namespace) -> int:
    if args.config:
        os.environ[CONFIG_ENV] = args.config
    raw = _read(args)
    value: Any
    if args.from_json:
        try:
            value = json.loads(raw)
        except ValueError:
            print("sealed-results: the input is not valid JSON", file=sys.stderr)
            return EXIT_USAGE
    elif args.binary:
        value = raw
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            print("sealed-results: the input is not UTF-8 text (use --binary)", file=sys.stderr)
            return EXIT_USAGE
        value = text if args.keep_newline else text.removesuffix("\n").removesuffix("\r")
    print(seal(value, args.profile))
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "seal",
        help="seal a value read from stdin or a file; print the token to pass as a parameter",
        description="Seal a value (read from standard input or --file, never from the command "
        "line) into the profile's store and print sealed:<profile>:<token>.",
    )
    add_profile_options(parser)
    parser.add_argument("--file", help="read the value from this file ('-': standard input)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--from-json", action="store_true", help="the input is JSON: seal the decoded value"
    )
    kind.add_argument("--binary", action="store_true", help="seal the input bytes as they are")
    parser.add_argument(
        "--keep-newline",
        action="store_true",
        help="keep a trailing newline of text input (removed by default)",
    )
    parser.set_defaults(func=_run)

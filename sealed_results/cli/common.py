"""What every verb of the ``sealed-results`` command shares: exit codes and common options.

Exit codes: 0 success; 1 a check failed (e.g. ``doctor``, ``verify``); 2 bad usage or
configuration (for ``doctor``: a failed step whose fix is in the configuration, such as a
missing keyring file); 3 an integrity failure; 4 a key provider or store failure.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTEGRITY",
    "EXIT_OK",
    "EXIT_PROVIDER",
    "EXIT_USAGE",
    "Run",
    "Verb",
    "add_json_option",
    "add_profile_options",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTEGRITY, EXIT_PROVIDER = 0, 1, 2, 3, 4

Run = Callable[[argparse.Namespace], int]


class Verb(Protocol):
    """A verb module: ``add_parser`` adds its subcommand and sets ``func`` (a ``Run``) as the
    parser's default, which ``main`` calls with the parsed arguments."""

    def add_parser(self, subparsers: Any) -> None: ...


def add_profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", help="profile name (default: $SEALED_RESULTS_PROFILE, else default_profile)"
    )
    parser.add_argument(
        "--config",
        help="config file (default: $SEALED_RESULTS_CONFIG, ./sealed-results.toml, "
        "then $XDG_CONFIG_HOME/sealed-results/config.toml)",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")

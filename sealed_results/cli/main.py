"""The ``sealed-results`` command: thin verbs over library functions.

Each verb is a module with ``add_parser(subparsers)``, which adds its subcommand and sets the
function to run as the parser's ``func`` default; ``VERBS`` lists them in help order. A new
verb (``rotate``, ``verify``...) is a new module plus one line in ``VERBS``: ``main`` parses,
calls ``func``, and turns library errors into the documented exit codes (cli.common).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sealed_results.cli import audit, demo, doctor, keys, maintenance, plugins, reveal, seal
from sealed_results.cli.common import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_PROVIDER,
    EXIT_USAGE,
    Verb,
)
from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    SealedResultsError,
    StorageError,
)

__all__ = ["VERBS", "build_parser", "main"]

VERBS: tuple[Verb, ...] = (keys, demo, plugins, doctor, maintenance, seal, audit, reveal)


def build_parser(verbs: Sequence[Verb] = VERBS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealed-results",
        description="Encrypted task results in your own storage; "
        "opaque tokens for the orchestrator.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in verbs:
        verb.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Library messages name no roots, keys or values, so they are safe to print as they are.
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"sealed-results: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except IntegrityError as exc:
        print(f"sealed-results: integrity error: {exc}", file=sys.stderr)
        return EXIT_INTEGRITY
    except (KeyProviderError, StorageError) as exc:
        print(f"sealed-results: {exc}", file=sys.stderr)
        return EXIT_PROVIDER
    except SealedResultsError as exc:
        print(f"sealed-results: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

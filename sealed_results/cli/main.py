"""The ``sealed-results`` command: thin verbs over library functions.

Exit codes: 0 success; 1 a check failed (e.g. ``doctor``, ``verify``); 2 bad usage or
configuration (for ``doctor``: a failed step whose fix is in the configuration, such as a
missing keyring file); 3 an integrity failure; 4 a key provider or store failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    SealedResultsError,
    StorageError,
)

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTEGRITY, EXIT_PROVIDER = 0, 1, 2, 3, 4

Command = Callable[[argparse.Namespace], int]


def _keys_init(args: argparse.Namespace) -> int:
    from sealed_results.keyproviders.local import create_keyring

    create_keyring(args.path)
    print("created a keyring with one key (mode 0600); keep it secret and backed up")
    return EXIT_OK


def _keys_add(args: argparse.Namespace) -> int:
    from sealed_results.keyproviders.local import LocalKeyring

    keyring = LocalKeyring(args.path)
    keyring.rotate()
    print(f"added key version {keyring.describe()['primary_version']}; older versions still read")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from sealed_results.demo import run_demo

    return run_demo(root=args.root)


def _plugins(args: argparse.Namespace) -> int:
    from sealed_results.plugins import list_plugins

    infos = list_plugins()
    if args.json:
        print(json.dumps([vars(info) for info in infos], indent=2))
        return EXIT_OK
    rows = [
        (
            info.group.rsplit(".", 1)[-1],
            info.name,
            f"{info.distribution} {info.version}",
            "ok" if info.loaded else f"not loadable: {info.error}",
        )
        for info in infos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]
        )
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from sealed_results.doctor import run_doctor

    report = run_doctor(args.profile, path=args.config)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return report.exit_code
    label = repr(report.profile) if report.profile else "(not resolved)"
    print(f"sealed-results doctor: profile {label}")
    width = max(len(check.step) for check in report.checks)
    for check in report.checks:
        print(f"  {check.status}  {check.step.ljust(width)}  {check.detail}")
    failed = sum(check.status == "FAIL" for check in report.checks)
    print("all checks passed" if report.ok else f"{failed} check(s) failed")
    return report.exit_code


def _add_profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", help="profile name (default: $SEALED_RESULTS_PROFILE, else default_profile)"
    )
    parser.add_argument(
        "--config",
        help="config file (default: $SEALED_RESULTS_CONFIG, ./sealed-results.toml, "
        "then $XDG_CONFIG_HOME/sealed-results/config.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealed-results",
        description="Encrypted task results in your own storage; "
        "opaque tokens for the orchestrator.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", help="manage a local keyring file")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = keys_sub.add_parser("init", help="create a new keyring file (mode 0600)")
    init.add_argument("path")
    init.set_defaults(func=_keys_init)
    add = keys_sub.add_parser("add", help="add a new key version; old versions keep reading")
    add.add_argument("path")
    add.set_defaults(func=_keys_add)

    demo = sub.add_parser("demo", help="write and read a few results on local disk, no servers")
    demo.add_argument("--root", help="directory to use (default: a new temporary directory)")
    demo.set_defaults(func=_demo)

    plugins = sub.add_parser("plugins", help="list installed plugins and whether they load")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(func=_plugins)

    doctor = sub.add_parser(
        "doctor", help="check a profile end to end: config, key provider, store, a probe result"
    )
    _add_profile_options(doctor)
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(func=_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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

"""``sealed-results keys init PATH`` and ``keys add PATH``: a local keyring file."""

from __future__ import annotations

import argparse
from typing import Any

from sealed_results.cli.common import EXIT_OK
from sealed_results.keyproviders.local import LocalKeyring, create_keyring

__all__ = ["add_parser"]


def _init(args: argparse.Namespace) -> int:
    create_keyring(args.path)
    print("created a keyring with one key (mode 0600); keep it secret and backed up")
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    # A compare-and-swap under the keyring's lock: `keys add` run by several processes at once
    # adds one version each and loses none (docs/keyproviders.md).
    version = LocalKeyring(args.path).add_version()
    print(f"added key version {version}; older versions still read")
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="manage a local keyring file")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create a new keyring file (mode 0600)")
    init.add_argument("path")
    init.set_defaults(func=_init)
    add = actions.add_parser("add", help="add a new key version; old versions keep reading")
    add.add_argument("path")
    add.set_defaults(func=_add)

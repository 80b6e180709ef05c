"""``sealed-results plugins``: installed plugins and whether each loads."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sealed_results.cli.common import EXIT_OK, add_json_option
from sealed_results.plugins import list_plugins

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
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
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        print(cells, row[3])
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("plugins", help="list installed plugins and whether they load")
    add_json_option(parser)
    parser.set_defaults(func=_run)

"""Maintenance verbs: ``inventory``, ``rotate``, ``retire``, ``verify``, ``inspect``, ``gc``.

Thin wrappers over ``sealed_results.maintenance``. Each takes ``--profile``, ``--config`` and
``--json``; long scans show a progress line on stderr when it is a terminal (none otherwise);
``rotate``, ``retire`` and ``gc`` are dry runs unless ``--apply``. Exit codes (cli.common): 0
fine; 1 something failed or was refused (objects that failed, a refused retire, a rotation left
incomplete); 2 configuration or usage; 3 integrity (``inspect`` of a tampered object); 4 the key
provider or the store failed. Objects are named only by their opaque reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from sealed_results import maintenance
from sealed_results.cli.common import add_json_option, add_profile_options
from sealed_results.config import from_profile
from sealed_results.handlers import ResultHandler

__all__ = ["TerminalProgress", "add_parser"]


class TerminalProgress:
    """``phase: done/total`` redrawn on one stderr line, at most ten times a second; silent
    when stderr is not a terminal (cron, CI, pipes)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._on = self._stream.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done != total:
            return
        self._last = now
        of = f"/{total}" if total is not None else ""
        self._stream.write(f"\r\x1b[K{phase}: {done}{of}")
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


def _handler(args: argparse.Namespace) -> ResultHandler:
    return from_profile(args.profile, path=args.config)


def _emit(args: argparse.Namespace, report: Any, lines: list[str]) -> int:
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print("\n".join(lines))
    return int(report.exit_code)


def _objects(rows: list[dict[str, str]], key: str = "error", limit: int = 20) -> list[str]:
    out = [f"    {row['object']}  {row.get(key, '')}" for row in rows[:limit]]
    if len(rows) > limit:
        out.append(f"    ... and {len(rows) - limit} more (--json lists up to 1000)")
    return out


def _providers(rows: list[dict[str, Any]]) -> str:
    def one(row: dict[str, Any]) -> str:
        current = "?" if row.get("current") is None else f"v{row['current']}"
        minimum = "" if row.get("minimum") is None else f", lowest readable v{row['minimum']}"
        return f"{row['kind']} {current}{minimum}"

    return "; ".join(one(r) for r in rows) or "(none)"


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


# -- verbs ----------------------------------------------------------------------------------------
def _inventory(args: argparse.Namespace) -> int:
    progress = TerminalProgress()
    try:
        r = maintenance.inventory(_handler(args), workers=args.workers, progress=progress)
    finally:
        progress.close()
    lines = [
        f"key providers: {_providers(r.providers)}",
        f"results: {r.objects} ({_size(r.bytes)}); outdated (below a current version): "
        f"{r.outdated}",
    ]
    for row in r.by_key:
        lines.append(
            f"  {row['kind']:<8} {row['version']:<8} {row['objects']:>9} objects  "
            f"{_size(row['bytes'])}"
        )
    keyset = ", ".join(f"{k['kind']} {k['version']}" for k in r.keyset) or "absent"
    lines.append(
        f"token keys: {r.token_keys if r.token_keys is not None else 'unknown'} "
        f"(keyset wrapped by {keyset})"
    )
    if r.rotation:
        lines.append(f"rotation journal: {r.rotation['state']}")
    lines.append(f"unreadable: {r.unreadable}")
    lines += _objects(r.unreadable_objects)
    lines += [f"note: {n}" for n in r.notes]
    return _emit(args, r, lines)


def _rotate(args: argparse.Namespace) -> int:
    progress = TerminalProgress()
    try:
        r = maintenance.rotate(
            _handler(args),
            apply=args.apply,
            rewrap_only=args.rewrap_only,
            new_token_key=not args.no_token_key,
            settle=args.settle,
            workers=args.workers,
            max_in_memory=args.max_in_memory,
            batch=args.batch,
            progress=progress,
            resume=args.resume,
        )
    finally:
        progress.close()
    if args.resume and r.applied and r.run is None:  # nothing was left to resume
        return _emit(args, r, [f"note: {n}" for n in r.notes])
    if not r.applied:
        lines = [
            f"key providers: {_providers(r.providers_before)}",
            f"would rotate: {', '.join(r.providers_rotated) or 'nothing (rewrap only)'}",
            f"would rewrap: {r.would_rewrap} of {r.objects} results plus the keyset",
            "would add a token key" if not (args.rewrap_only or args.no_token_key) else "",
        ]
        lines = [line for line in lines if line] + [f"note: {n}" for n in r.notes]
        return _emit(args, r, lines)
    lines = [
        f"rotation {r.run}: {r.state}" + (" (resumed)" if r.resumed else ""),
        f"key providers before: {_providers(r.providers_before)}",
        f"key providers after:  {_providers(r.providers_after)}",
        f"rewrapped {r.rewrapped}, already current {r.already_current}, skipped {r.skipped}, "
        f"failed {r.failed} (of {r.objects} objects incl. the keyset) in {r.seconds:.1f} s",
        f"token key added: {'yes' if r.token_key_added else 'no'}"
        + (f" ({r.token_keys} token keys)" if r.token_keys is not None else ""),
    ]
    if r.failures:
        lines.append("failed (object reference, error):")
        lines += _objects(r.failures)
    if r.skipped_objects:
        lines.append("skipped (object reference, reason):")
        lines += _objects(r.skipped_objects, "reason")
    lines += [f"note: {n}" for n in r.notes]
    return _emit(args, r, lines)


def _retire(args: argparse.Namespace) -> int:
    progress = TerminalProgress()
    try:
        r = maintenance.retire(
            _handler(args),
            apply=args.apply,
            min_wait=args.min_wait,
            ignore_unreadable=args.ignore_unreadable,
            workers=args.workers,
            progress=progress,
        )
    finally:
        progress.close()
    lines = [f"key providers: {_providers(r.providers)}"]
    if r.refused:
        lines.append(f"refused: {r.reason}")
        lines += [f"    {name}" for name in r.remaining_objects[:20]]
    else:
        lines.append(f"scanned {r.scanned} objects: none uses an older key version")
        lines += [f"  {a}" for a in r.actions]
    lines += [f"note: {n}" for n in r.notes]
    return _emit(args, r, lines)


def _verify(args: argparse.Namespace) -> int:
    progress = TerminalProgress()
    try:
        r = maintenance.verify(_handler(args), workers=args.workers, progress=progress)
    finally:
        progress.close()
    lines = [f"checked {r.checked} objects ({_size(r.bytes)}): {r.ok} ok, {r.failed} failed"]
    if r.failures:
        lines.append("failed (object reference for `inspect`, kind of failure):")
        lines += _objects(r.failures)
    return _emit(args, r, lines)


def _inspect(args: argparse.Namespace) -> int:
    r = maintenance.inspect(_handler(args), args.target)
    stanzas = ", ".join(f"{s['kind']} {s['version']}" for s in r.key_stanzas)
    lines = [
        f"object:     {r.object}",
        f"size:       {r.stored_size} bytes stored, {r.payload_size} bytes of payload",
        f"serializer: {r.serializer}",
        f"key:        {stanzas}",
        f"modified:   {r.modified or 'unknown'}",
        "authentic:  yes (every byte verified)",
    ]
    if r.matches_token is False:
        lines.append("note: this is not the blob the token was issued for (an older or newer copy)")
    lines += [f"note: {n}" for n in r.notes]
    return _emit(args, r, lines)


def _gc(args: argparse.Namespace) -> int:
    progress = TerminalProgress()
    try:
        r = maintenance.gc(
            _handler(args),
            args.older_than,
            apply=args.apply,
            workers=args.workers,
            progress=progress,
        )
    finally:
        progress.close()
    verb = "deleted" if r.applied else "would delete"
    lines = [
        f"results modified before {r.cutoff}: {r.candidates} ({_size(r.candidate_bytes)})",
        f"{verb}: {r.deleted if r.applied else r.candidates}; kept {r.kept}; age unknown "
        f"{r.unknown_age} (kept); failed {r.failed}",
        "the keyset and the rotation journal are never deleted",
    ]
    lines += _objects(r.failures)
    lines += [f"note: {n}" for n in r.notes]
    return _emit(args, r, lines)


# -- parsers --------------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, *, workers: int = 8) -> None:
    add_profile_options(parser)
    add_json_option(parser)
    parser.add_argument(
        "--workers", type=int, default=workers, help=f"parallel requests (default {workers})"
    )


def _apply(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true", help="make the change (default: a dry run)")


def _bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "inventory", help="results per key provider and key version, from headers only"
    )
    _common(p)
    p.set_defaults(func=_inventory)

    p = subparsers.add_parser(
        "rotate",
        help="new key-encryption key version, rewrap every data key, new token key "
        "(dry run unless --apply; resumable)",
    )
    _common(p)
    _apply(p)
    p.add_argument(
        "--rewrap-only",
        action="store_true",
        help="no new key version or token key: rewrap what is not current",
    )
    p.add_argument("--no-token-key", action="store_true", help="do not add a token key")
    p.add_argument(
        "--resume",
        action="store_true",
        help="only finish a rotation a crash or kill left unfinished; never start a new one",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds between the new key version and the first rewrap (default 2)",
    )
    p.add_argument(
        "--max-in-memory",
        type=_bytes,
        default=1 << 30,
        help="on stores that rewrite in memory (not local, S3): skip objects larger than this "
        "(default 1GiB)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=256,
        help="objects per journaled batch: a restart redoes at most one (default 256)",
    )
    p.set_defaults(func=_rotate)

    p = subparsers.add_parser(
        "retire",
        help="raise the lowest readable key version, once no stored object uses an older one",
    )
    _common(p)
    _apply(p)
    p.add_argument(
        "--min-wait",
        type=float,
        default=300.0,
        help="seconds since the last rotation before retiring (default 300)",
    )
    p.add_argument(
        "--ignore-unreadable",
        action="store_true",
        help="retire even when some headers cannot be read",
    )
    p.set_defaults(func=_retire)

    p = subparsers.add_parser("verify", help="authenticate every stored blob, streaming")
    _common(p, workers=4)
    p.set_defaults(func=_verify)

    p = subparsers.add_parser(
        "inspect", help="what a token or an object reference points to (no content)"
    )
    p.add_argument("target", metavar="TOKEN", help="a token, or an object reference")
    add_profile_options(p)
    add_json_option(p)
    p.set_defaults(func=_inspect)

    p = subparsers.add_parser(
        "gc", help="delete results older than a bound (dry run unless --apply)"
    )
    _common(p)
    _apply(p)
    p.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 90d, 12h, 2w, 1d12h (by the store's last-modified time)",
    )
    p.set_defaults(func=_gc)

"""``sealed-results doctor``: check a profile end to end, one step at a time.

Config found and parsed, profile resolved, handler built, each key provider reached (describe and
a wrap/unwrap round trip), store reached, the keyset present (or the root empty: first use), the
store's keyset updates atomic (compare-and-swap), token keys opened, then a probe result
written, read back and deleted. Each step reports PASS, FAIL or SKIP with a short reason made of
our own error messages, which never name roots, URLs, key names or values; a foreign exception
shows only its type, since its text may carry any of those. WARN marks a risk that does not stop
anything working (a store whose swaps are not atomic): it does not change the exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.cli.common import add_json_option, add_profile_options
from sealed_results.config import Profile, load_config, resolve_profile
from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeysetMissing,
    ResultNotFound,
    SealedResultsError,
    StoreConflict,
)
from sealed_results.handlers import ResultHandler
from sealed_results.keyproviders import KeyProvider

__all__ = ["Check", "DoctorReport", "add_parser", "run_doctor"]

PASS, FAIL, SKIP, WARN = "PASS", "FAIL", "SKIP", "WARN"


@dataclass(frozen=True)
class Check:
    step: str
    status: str  # PASS, FAIL, SKIP or WARN
    detail: str
    config_error: bool = False  # the fix is in the configuration (exit code 2)


@dataclass
class DoctorReport:
    profile: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(c.status in (PASS, WARN) for c in self.checks)

    @property
    def warnings(self) -> int:
        return sum(c.status == WARN for c in self.checks)

    @property
    def exit_code(self) -> int:
        failed = [c for c in self.checks if c.status == FAIL]
        if any(c.config_error for c in failed):
            return 2
        return 1 if failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "ok": self.ok,
            "warnings": self.warnings,
            "exit_code": self.exit_code,
            "checks": [asdict(c) for c in self.checks],
        }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SealedResultsError):
        return f"{type(exc).__name__}: {exc}"
    return f"unexpected {type(exc).__name__}"


class _Runner:
    def __init__(self, report: DoctorReport) -> None:
        self.report = report

    def step(self, name: str, action: Callable[[], str | Check], *, hint: str = "") -> bool:
        """Run one check; its return value is the PASS detail, or a whole Check (a WARN)."""
        try:
            detail = action()
        except Exception as exc:
            reason = _reason(exc)
            if hint and isinstance(exc, IntegrityError):
                reason = f"{reason} ({hint})"
            self.report.checks.append(
                Check(name, FAIL, reason, config_error=isinstance(exc, ConfigError))
            )
            return False
        self.report.checks.append(
            detail if isinstance(detail, Check) else Check(name, PASS, detail)
        )
        return True

    def skip(self, *names: str) -> None:
        for name in names:
            self.report.checks.append(Check(name, SKIP, "an earlier step failed"))


def _round_trip(provider: KeyProvider, name: str) -> str | Check:
    context = os.urandom(16)  # like a blob's key id
    data_key, wrapped = provider.generate_data_key(context)
    if provider.unwrap_data_key(wrapped, context) != data_key:
        raise IntegrityError("the wrap/unwrap round trip returned a different key")
    done = f"{provider.kind}: reachable, wrap/unwrap round trip ok"
    # After a wrap, so that providers which learn about their key on first use (Vault reads
    # the Transit key's type) can say what they found.
    key_type = provider.describe().get("key_type")
    if isinstance(key_type, str) and key_type.startswith("unknown"):
        # Public-key Transit keys are refused, but here the key's type could not be read.
        return Check(name, WARN, f"{done}; key type {key_type}")
    return done


_SWAP_PROBE = ".doctor-swap-probe"
_NOT_ATOMIC = (
    "concurrent key rotations could lose keys here: run rotations from one process at a time"
)


def _swap_check(handler: ResultHandler) -> str | Check:
    """Whether keyset updates are compare-and-swaps the store enforces: ``atomic_swap``, and a
    probe object that a stale or exclusive swap must not overwrite (an S3-compatible server
    that ignores If-Match fails it). The probe's name starts with a dot: never a result, and
    not counted as one by the keyset's "root holds results" check."""
    store = handler.store
    if not store.atomic_swap:
        return Check(
            "keyset updates",
            WARN,
            f"not atomic on this store ({type(store).__name__}): {_NOT_ATOMIC}",
        )
    # One fixed name, so that a local root keeps at most one lock file of doctor's.
    probe = _SWAP_PROBE
    ignored = []
    with contextlib.suppress(ResultNotFound):
        store.delete(probe)  # left by an interrupted run
    try:
        store.swap(probe, b"first", None)
        _, version = store.get_versioned(probe)
        store.swap(probe, b"second", version)
        for stale in (version, None):
            try:
                store.swap(probe, b"must not land", stale)
                ignored.append(stale)
            except StoreConflict:
                pass
    finally:
        with contextlib.suppress(SealedResultsError):
            store.delete(probe)
    if ignored:
        return Check(
            "keyset updates",
            WARN,
            f"the store accepted a write whose condition did not hold: {_NOT_ATOMIC}",
        )
    return "atomic (compare-and-swap enforced by the store)"


def run_doctor(
    profile: str | None = None, *, path: str | os.PathLike[str] | None = None
) -> DoctorReport:
    """Check profile ``profile`` (None: the default) of the config file, end to end."""
    report = DoctorReport()
    run = _Runner(report)
    later = [
        "profile", "handler", "keyprovider", "store", "keyset", "keyset updates", "token keys",
        "write", "read", "delete",
    ]  # fmt: skip

    def config_step() -> str:
        config = load_config(path)
        return f"found via {config.source}; {len(config.profiles)} profile(s)"

    if not run.step("config", config_step):
        run.skip(*later)
        return report

    resolved: list[Profile] = []

    def profile_step() -> str:
        resolved.append(resolve_profile(profile, path=path))
        report.profile = resolved[0].name
        return f"profile {resolved[0].name!r} resolves"

    handlers: list[ResultHandler] = []

    def handler_step() -> str:
        handlers.append(resolved[0].build())
        return f"{resolved[0].handler} handler built"

    if not run.step("profile", profile_step):
        run.skip(*later[1:])
        return report
    if not run.step("handler", handler_step):
        run.skip(*later[2:])
        return report
    handler = handlers[0]

    # The concrete providers behind composites (several providers, the cache), each reached
    # directly: a cached wrap would not prove the provider answers.
    providers = handler.keyprovider.providers()
    keys_ok = True
    for index, provider in enumerate(providers):
        name = "keyprovider" if len(providers) == 1 else f"keyprovider[{index}]"
        keys_ok &= run.step(name, functools.partial(_round_trip, provider, name))

    def store_step() -> str:
        # Listing one name proves the store answers; a root not created yet is empty, not bad.
        next(iter(handler.list_objects()), None)
        return "reachable"

    if not run.step("store", store_step):
        run.skip("keyset", "keyset updates", "token keys", "write", "read", "delete")
        return report

    def keyset_present_step() -> str:
        if handler.keyset_exists():
            return "present"
        if next(iter(handler.list_objects()), None) is not None:
            raise KeysetMissing()  # results but no keyset: never recreated, restore it
        return "absent; the root holds no results yet (first use creates it)"

    keyset_ok = run.step("keyset", keyset_present_step)
    run.step("keyset updates", functools.partial(_swap_check, handler))
    if not (keyset_ok and keys_ok):
        run.skip("token keys", "write", "read", "delete")
        return report

    def keyset_step() -> str:
        existed = handler.keyset_exists()
        count = handler.open_keyset()
        if not existed:
            return "created (first use of this root)"
        return f"opened ({count} token key{'s' if count != 1 else ''})"

    hint = "is this the key provider that wrote this root?"
    if not run.step("token keys", keyset_step, hint=hint):
        run.skip("write", "read", "delete")
        return report

    probe = {"sealed-results doctor probe": os.urandom(16).hex()}
    tokens: list[str] = []

    def write_step() -> str:
        tokens.append(handler.write(probe))
        return "probe result written"

    def read_step() -> str:
        if handler.read(tokens[0]) != probe:
            raise IntegrityError("the probe result read back differs")
        return "probe result read back exactly"

    def delete_step() -> str:
        handler.delete(tokens[0])
        if handler.exists(tokens[0]):
            raise SealedResultsError("the probe result is still there after delete")
        return "probe result deleted"

    if not run.step("write", write_step):
        run.skip("read", "delete")
        return report
    run.step("read", read_step)
    run.step("delete", delete_step)  # even after a failed read: leave no probe behind
    return report


def _run(args: argparse.Namespace) -> int:
    report = run_doctor(args.profile, path=args.config)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return report.exit_code
    label = repr(report.profile) if report.profile else "(not resolved)"
    print(f"sealed-results doctor: profile {label}")
    width = max(len(check.step) for check in report.checks)
    for check in report.checks:
        print(f"  {check.status}  {check.step.ljust(width)}  {check.detail}")
    failed = sum(check.status == FAIL for check in report.checks)
    warned = f" ({report.warnings} warning{'s' if report.warnings != 1 else ''})"
    if report.ok:
        print("all checks passed" + (warned if report.warnings else ""))
    else:
        print(f"{failed} check(s) failed" + (warned if report.warnings else ""))
    return report.exit_code


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check a profile end to end: config, key provider, store, a probe result"
    )
    add_profile_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=_run)

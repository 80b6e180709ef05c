"""Shared fixtures: a local keyring and handler, plus the suite-wide leak scan (tests/leakscan)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealed_results.testing import leakscan

pytest_plugins = ["tests.servers", "tests.provider_fixtures"]

PLAINTEXT_MARKER = "plaintext-marker-0c4f9e"

leakscan.install()
leakscan.SCAN.add_secret(PLAINTEXT_MARKER)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = leakscan.SCAN.leaks()
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["LEAK SCAN FAILED: secrets in exception messages, reprs or logs:", *leaks[:50]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = 1
    elif leakscan.SCAN.texts:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"leak scan: {len(leakscan.SCAN.texts)} messages checked against "
                f"{len(leakscan.SCAN.secrets)} secrets, none leaked"
            )


def register_keyring_secrets(path: Path) -> None:
    document = json.loads(path.read_text())
    for entry in document["keys"].values():
        raw = base64.urlsafe_b64decode(entry["key"])
        leakscan.SCAN.add_secret(entry["key"], raw.hex(), raw)


def register_tree(root: Path) -> None:
    """Every stored name under a local root (object names are secrets too)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name != "keyset":
                leakscan.SCAN.add_secret(name, os.path.join(dirpath, name))


@pytest.fixture
def leak_scan() -> leakscan.LeakScan:
    return leakscan.SCAN


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    from sealed_results.keyproviders.local import create_keyring

    path = create_keyring(tmp_path / "keys.json")
    register_keyring_secrets(path)
    leakscan.SCAN.add_secret(str(path))
    return path


@pytest.fixture
def keyring(keyring_path: Path):  # type: ignore[no-untyped-def]
    from sealed_results.keyproviders.local import LocalKeyring

    return LocalKeyring(keyring_path)


@pytest.fixture
def local_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "results-root"
    leakscan.SCAN.add_secret(str(root))
    yield root
    register_tree(root)


@pytest.fixture
def local_handler(local_root: Path, keyring):  # type: ignore[no-untyped-def]
    from sealed_results.handlers import LocalHandler

    return LocalHandler(root=str(local_root), keyprovider=keyring, segment_size=1 << 16)

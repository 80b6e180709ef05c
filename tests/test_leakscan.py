"""The leak scan itself must be able to fail, and our reprs and messages must give it nothing."""

from __future__ import annotations

import logging
from pathlib import Path

from sealed_results.errors import IntegrityError, StorageError
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.testing.leakscan import LeakScan


def test_scan_detects_a_secret_in_a_message() -> None:
    scan = LeakScan()
    scan.add_secret("/srv/secret-root")
    scan.record("IntegrityError", "failed at /srv/secret-root/abc")
    scan.record("StorageError", "the store failed")
    assert len(scan.leaks()) == 1


def test_errors_built_anywhere_are_recorded(leak_scan: LeakScan) -> None:
    before = len(leak_scan.texts)
    IntegrityError()
    StorageError("the store failed")
    logging.getLogger("sealed_results.test").warning("a log line")
    assert len(leak_scan.texts) == before + 3


def test_reprs_are_constant(keyring_path: Path, local_root: Path) -> None:
    keyring = LocalKeyring(keyring_path)
    handler = LocalHandler(str(local_root), keyring)
    handler.write("x")
    for obj in (keyring, handler):
        text = repr(obj)
        assert str(keyring_path) not in text and str(local_root) not in text

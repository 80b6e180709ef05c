"""The suite-wide leak scan: no message or repr of ours may carry a secret.

Every ``SealedResultsError`` built during the session and every log record of the
``sealed_results`` loggers is kept; fixtures register the strings that must never appear (roots,
object names, key material, plaintext markers). At the end of the session the scan fails the run
if any kept text contains any registered string. Recording wraps the exception's ``__init__``
without changing what it does: the code under test runs as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sealed_results.errors import SealedResultsError

MIN_SECRET_LEN = 6  # shorter strings match by accident (hex digits, small numbers)


@dataclass
class LeakScan:
    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text)

    def add_secret(self, *values: str | bytes) -> None:
        for value in values:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if len(text) >= MIN_SECRET_LEN:
                self.secrets.add(text)

    def record(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def leaks(self) -> list[str]:
        # One search per secret over all texts at once (a C substring search), then a look at
        # each text only for the secrets that occur somewhere: a session records tens of
        # thousands of texts against thousands of secrets, too many to pair up one by one.
        everything = "\0".join(text for _, text in self.texts)
        present = [secret for secret in self.secrets if secret in everything]
        found = []
        for where, text in self.texts:
            for secret in present:
                if secret in text:
                    found.append(f"{where}: contains a registered secret ({len(secret)} chars)")
                    break
        return found


SCAN = LeakScan()


class _RecordingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        SCAN.record(f"log {record.name}", record.getMessage())


def install() -> None:
    original = SealedResultsError.__init__

    def recording_init(self: SealedResultsError, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        SCAN.record(type(self).__name__, f"{self} {self!r}")

    SealedResultsError.__init__ = recording_init  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("sealed_results")
    logger.addHandler(_RecordingHandler(logging.DEBUG))
    logger.setLevel(logging.DEBUG)

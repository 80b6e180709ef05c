"""Bounded retries with exponential backoff and full jitter, for calls that may fail transiently.

Generic on purpose: store handlers and key providers both use it, each with its own
``is_transient`` (which errors are worth another try is the caller's knowledge, not ours).

Full jitter (a delay drawn uniformly from ``[0, min(max_delay, base_delay * 2**n)]``) spreads
the retries of many clients that failed together, so they do not hammer a recovering service in
lockstep. The bound is the number of attempts; with ``max_delay`` it also bounds the time spent
sleeping.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy", "backoff_delay", "retry"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


def backoff_delay(
    retry_number: int,
    *,
    base_delay: float,
    max_delay: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """The pause before retry ``retry_number`` (1 for the first retry): full jitter over an
    exponentially growing cap."""
    cap = min(max_delay, base_delay * 2.0 ** (retry_number - 1))
    return cap * rand()


def retry(
    fn: Callable[[], T],
    *,
    is_transient: Callable[[Exception], bool],
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    what: str = "call",
) -> T:
    """Call ``fn`` until it returns, at most ``attempts`` times.

    An exception for which ``is_transient`` is false is raised at once; a transient one is
    raised after the last attempt. Only ``Exception`` is caught: KeyboardInterrupt and the like
    always stop at once. ``what`` names the operation in debug logs; it must be a fixed word
    (never a path, bucket or key name), since log lines can reach the orchestrator.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay, rand=rand)
            # The exception's type only: its message may name a bucket or an object.
            logger.debug(
                "%s failed transiently (%s); retry %d of %d in %.2f s",
                what,
                type(exc).__name__,
                attempt,
                attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry; picklable, so it travels with a handler.

    ``attempts`` counts the first try, so ``attempts=1`` disables retrying.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("attempts must be >= 1 and delays >= 0")

    def call(
        self,
        fn: Callable[[], T],
        *,
        is_transient: Callable[[Exception], bool],
        sleep: Callable[[float], None] = time.sleep,
        what: str = "call",
    ) -> T:
        return retry(
            fn,
            is_transient=is_transient,
            attempts=self.attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            sleep=sleep,
            what=what,
        )

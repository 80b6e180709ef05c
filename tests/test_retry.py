"""sealed_results.retry: bounded exponential backoff with full jitter."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable

import pytest

from sealed_results.retry import RetryPolicy, backoff_delay, retry


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


def flaky(
    failures: list[BaseException], result: str = "done"
) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result

    return calls, fn


def is_transient(exc: Exception) -> bool:
    return isinstance(exc, Transient)


def test_success_needs_one_call_and_no_sleep() -> None:
    calls, fn = flaky([])
    sleeps: list[float] = []
    assert retry(fn, is_transient=is_transient, sleep=sleeps.append) == "done"
    assert (len(calls), sleeps) == (1, [])


def test_transient_errors_back_off_exponentially_up_to_the_cap() -> None:
    calls, fn = flaky([Transient(), Transient(), Transient(), Transient()])
    sleeps: list[float] = []
    result = retry(
        fn,
        is_transient=is_transient,
        attempts=5,
        base_delay=0.5,
        max_delay=1.5,
        sleep=sleeps.append,
        rand=lambda: 1.0,  # the top of each jitter range
    )
    assert result == "done"
    assert len(calls) == 5
    assert sleeps == [0.5, 1.0, 1.5, 1.5]


def test_full_jitter_stays_within_the_range() -> None:
    delays = [backoff_delay(3, base_delay=1.0, max_delay=10.0) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100  # spread, not lockstep
    assert backoff_delay(3, base_delay=1.0, max_delay=10.0, rand=lambda: 0.25) == 1.0


def test_gives_up_after_the_bound_with_the_last_error() -> None:
    last = Transient("third")
    calls, fn = flaky([Transient("first"), Transient("second"), last, Transient("never")])
    sleeps: list[float] = []
    with pytest.raises(Transient) as error:
        retry(fn, is_transient=is_transient, attempts=3, sleep=sleeps.append)
    assert error.value is last
    assert len(calls) == 3 and len(sleeps) == 2


def test_permanent_errors_raise_at_once() -> None:
    calls, fn = flaky([Permanent(), Transient()])
    sleeps: list[float] = []
    with pytest.raises(Permanent):
        retry(fn, is_transient=is_transient, attempts=5, sleep=sleeps.append)
    assert (len(calls), sleeps) == (1, [])


def test_keyboard_interrupt_is_never_retried() -> None:
    calls, fn = flaky([KeyboardInterrupt(), Transient()])
    with pytest.raises(KeyboardInterrupt):
        retry(fn, is_transient=lambda exc: True, attempts=5, sleep=lambda s: None)
    assert len(calls) == 1


def test_one_attempt_means_no_retry_and_zero_is_refused() -> None:
    calls, fn = flaky([Transient()])
    with pytest.raises(Transient):
        retry(fn, is_transient=is_transient, attempts=1, sleep=lambda s: None)
    assert len(calls) == 1
    with pytest.raises(ValueError):
        retry(fn, is_transient=is_transient, attempts=0)


def test_log_lines_name_the_error_type_only(caplog: pytest.LogCaptureFixture) -> None:
    _, fn = flaky([Transient("s3://secret-bucket/secret-object")])
    with caplog.at_level(logging.DEBUG, logger="sealed_results.retry"):
        retry(fn, is_transient=is_transient, sleep=lambda s: None, what="read")
    (record,) = caplog.records
    assert "Transient" in record.getMessage() and "read" in record.getMessage()
    assert "secret" not in record.getMessage()


def test_policy_validates_calls_and_pickles() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)
    policy = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
    calls, fn = flaky([Transient(), Transient()])
    assert policy.call(fn, is_transient=is_transient) == "done"
    assert len(calls) == 3
    assert pickle.loads(pickle.dumps(policy)) == policy

"""The one backoff (``backoff.retry``): the waits, the end on stop, what it never retries."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from footprint import backoff


class Recording(threading.Event):
    """A stop event that records each wait instead of sleeping, and is set after ``set_after`` waits."""

    def __init__(self, set_after: int = 1000) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.set_after = set_after

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return len(self.waits) >= self.set_after


def flaky(failures: int, exc: type[Exception] = OSError) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc(f"down {len(calls)}")
        return "stored"

    return calls, attempt


def test_waits_double_up_to_the_cap_and_the_result_is_returned() -> None:
    stop, seen = Recording(), []
    calls, attempt = flaky(6)
    result = backoff.retry(attempt, lambda exc, delay: seen.append((str(exc), delay)), stop, 0.5, 3.0)
    assert result == "stored" and len(calls) == 7
    assert stop.waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert seen == [(f"down {i}", d) for i, d in enumerate(stop.waits, 1)]  # told before each wait


def test_stop_during_a_wait_ends_it_with_the_last_failure_as_cause() -> None:
    stop = Recording(set_after=2)
    _calls, attempt = flaky(10)
    with pytest.raises(backoff.Stopped) as info:
        backoff.retry(attempt, lambda exc, delay: None, stop, 1.0, 30.0)
    assert str(info.value.__cause__) == "down 2" and stop.waits == [1.0, 2.0]


def test_only_what_it_is_told_to_retry_is_retried() -> None:
    _calls, attempt = flaky(1, exc=KeyError)
    with pytest.raises(KeyError):
        backoff.retry(attempt, lambda exc, delay: None, Recording(), 1.0, 30.0, retry_on=(OSError,))
    _calls, attempt = flaky(1, exc=ValueError)
    with pytest.raises(ValueError):
        backoff.retry(attempt, lambda exc, delay: None, Recording(), 1.0, 30.0,
                      give_up_on=(ValueError,))

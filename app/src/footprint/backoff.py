"""The one backoff: retry a piece of work that fails by outage, waiting longer each time.

The first wait is ``first`` seconds, each next one twice as long, up to ``cap``; a set ``stop``
ends the waiting at once (``Stopped``). The consumer's store writes (``storewrite.Retry``) and the
consume command's wait for its stores at startup (``cli.wait_for``) both retry through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


class Stopped(Exception):
    """``stop`` was set while waiting before the next attempt (the last failure is its cause)."""


def retry(attempt: Callable[[], R], on_failure: Callable[[Exception, float], None], stop: threading.Event,
          first: float, cap: float, retry_on: tuple[type[Exception], ...] = (Exception,),
          give_up_on: tuple[type[Exception], ...] = ()) -> R:
    """``attempt()`` until it returns; after each failure of ``retry_on`` (but not ``give_up_on``, which
    propagates), ``on_failure(exc, delay)`` then a wait of ``delay``. Raises ``Stopped`` when ``stop`` is set
    during a wait."""
    delay = first
    while True:
        try:
            return attempt()
        except give_up_on:
            raise
        except retry_on as exc:
            on_failure(exc, delay)
            if stop.wait(delay):
                raise Stopped() from exc
            delay = min(delay * 2, cap)

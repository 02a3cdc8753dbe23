"""Wait on a condition instead of sleeping a fixed time (the suite runs on 2 busy cores)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 15.0, *, poll: float = 0.05
) -> None:
    """Return as soon as ``condition()`` is true; fail naming ``what`` after ``timeout`` s.

    The timeout is a safety net against a hung test, not a measurement: a test that asserts
    how fast something happens belongs in bench/.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)

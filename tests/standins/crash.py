"""The process dying mid-request, for in-process tests of stand-ins served over real HTTP.

A stand-in cannot kill the test's sending thread from its own server thread. Instead it answers with
`CRASH_HEADER`, and while `dying_on_signal()` is active the HTTP transport (requests' `HTTPAdapter`,
below our code and the SDKs) raises `SimulatedCrash` in the calling thread on such an answer: the
thread stops right there, as if the process had died, before our code sees any response. Whether the
stand-in recorded the message first decides which crash it is: before the provider got it, or after
the provider accepted it but before we could record that. Tests that kill real processes are in
`tests/reliability/`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from requests.adapters import HTTPAdapter

CRASH_HEADER = "X-Standin-Crash"


class SimulatedCrash(BaseException):
    """The process dying mid-run (not an Exception: nothing in the app may swallow it)."""


_ORIGINAL_SEND = HTTPAdapter.send
_lock = threading.Lock()
_open = [0]  # `dying_on_signal()` blocks open: the transport is wrapped while there is one


def _send(adapter, request, *args, **kwargs):
    response = _ORIGINAL_SEND(adapter, request, *args, **kwargs)
    reason = response.headers.get(CRASH_HEADER)
    if reason is not None:
        response.close()
        raise SimulatedCrash(reason)
    return response


@contextmanager
def dying_on_signal() -> Iterator[None]:
    """While active, an answer carrying `CRASH_HEADER` raises `SimulatedCrash` in the thread that sent it.

    Blocks may nest and end in any order: the transport is restored when the last one ends.
    """
    with _lock:
        _open[0] += 1
        HTTPAdapter.send = _send  # type: ignore[method-assign]
    try:
        yield
    finally:
        with _lock:
            _open[0] -= 1
            if _open[0] == 0:
                HTTPAdapter.send = _ORIGINAL_SEND  # type: ignore[method-assign]

"""Stopping long work cleanly: a stop request that every long loop of the library checks.

A run is stopped by :func:`request_stop` (the command line does it on Ctrl-C or SIGTERM) or,
across processes and machines, by creating the file named in the environment variable
``VRME_STOP_FILE`` (worker processes inherit it; on a shared work folder remote Dask workers
see it too). The loops that take time (frames of a video, windows, training batches,
prediction batches, rendered frames) call :func:`check`, which raises :class:`Interrupted`
once a stop was requested. Every output is written atomically, so a stopped run leaves only
complete files and the next run resumes from them.
"""

from __future__ import annotations

import os
import threading
import time

STOP_FILE_ENV = "VRME_STOP_FILE"
"""Environment variable naming a file whose existence means: stop."""

_CHECK_EVERY_S = 0.2
"""The stop file is looked at at most this often per thread (a stat per frame is cheap, but
there is no need)."""

_event = threading.Event()
_last = threading.local()


class Interrupted(Exception):
    """The work was stopped on request (Ctrl-C, SIGTERM, a cancelled Prefect run). Never
    retried; what finished before it is kept."""


def request_stop() -> None:
    """Ask every loop of this process to stop at its next check; also creates the stop file
    when one is configured, so worker processes stop too."""
    _event.set()
    path = os.environ.get(STOP_FILE_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError:
            pass


def clear_stop() -> None:
    """Forget a stop request of this process (for a new run in the same process)."""
    _event.clear()


def stop_requested() -> bool:
    """True once a stop was requested in this process or the stop file exists."""
    if _event.is_set():
        return True
    path = os.environ.get(STOP_FILE_ENV)
    if not path:
        return False
    now = time.monotonic()
    if now - getattr(_last, "t", -1e9) < _CHECK_EVERY_S:
        return False
    _last.t = now
    if os.path.exists(path):
        _event.set()
        return True
    return False


def check(what: str = "") -> None:
    """Raise :class:`Interrupted` when a stop was requested (``what`` names the work)."""
    if stop_requested():
        raise Interrupted(f"stopped on request{f' during {what}' if what else ''}")

"""A temporary local Prefect server for one ``vrme`` command, when no server is configured.

Prefect starts such a server by itself (its "ephemeral" mode), but in the command's own process
group, so Ctrl-C in the terminal stopped the server under the still running flow, and with a
20 s start-up allowance that a new Prefect home (whose SQLite database is migrated first) can
exceed. vrme starts it here instead:

- in a session of its own (Ctrl-C reaches only the ``vrme`` command, which stops the run
  cleanly and then the server), watching its parent: it exits when the command is gone, even
  after a SIGKILL;
- with the time a first migration needs (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``,
  at least :data:`MIN_STARTUP_S`), saying so while it waits;
- after checking that the database can be opened: a damaged ``prefect.db`` is one line naming
  the file and what to do, not a thousand lines of tracebacks.

Run as ``python -m flows.tempserver PORT PARENT_PID``, it is the server process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from vrme.errors import UserError

MIN_STARTUP_S = 180.0
"""Seconds a temporary server may take to start (a new SQLite database is migrated first)."""

LOG_NAME = "vrme-temporary-server.log"


class PrefectStateError(UserError):
    """Prefect's own state (its database, its server) is unusable; the message says what to do."""


def prefect_home() -> Path:
    """Prefect's home folder (``PREFECT_HOME``, default ``~/.prefect``)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def sqlite_database() -> Path | None:
    """The SQLite file Prefect's server will use, or None when it uses another database."""
    from prefect.settings import get_current_settings

    raw = get_current_settings().server.database.connection_url
    url = str(raw.get_secret_value() if hasattr(raw, "get_secret_value") else raw or "")
    if url and not url.startswith("sqlite"):
        return None
    if not url:
        return prefect_home() / "prefect.db"
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path).expanduser() if path and path != ":memory:" else None


def check_database(db: Path | None) -> bool:
    """Raise :class:`PrefectStateError` when ``db`` exists but is not a readable SQLite
    database; return whether it exists (False: the first run will create and migrate it)."""
    if db is None or not db.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            con.execute("PRAGMA schema_version").fetchone()
            bad = con.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise PrefectStateError(_damaged(db, str(exc))) from None
    if bad and bad[0] != "ok":
        raise PrefectStateError(_damaged(db, str(bad[0])))
    return True


def _damaged(db: Path, why: str) -> str:
    return (f"Prefect's database {db} cannot be read ({why}). Move it aside "
            f"(mv {db} {db}.damaged) and run again: a new, empty one is made; the runs it "
            "recorded leave the UI, vrme's outputs stay where they are")


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies (Linux's
    PR_SET_PDEATHSIG; None elsewhere, where the child's own watch of its parent serves)."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def startup_allowance() -> float:
    """Seconds to wait for the server: the Prefect setting, but at least :data:`MIN_STARTUP_S`."""
    try:
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        return max(MIN_STARTUP_S, float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
    except Exception:  # noqa: BLE001 - an old Prefect without the setting
        return MIN_STARTUP_S


@contextlib.contextmanager
def _startup_lock(home: Path) -> Iterator[None]:
    """Serialise the start-up of temporary servers on one Prefect home: the first migrates the
    database, the others start on the migrated one (two migrations at once fail)."""
    import fcntl

    with open(home / ".vrme-startup.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def temporary_server(say: Callable[[str], None], services: bool = False) -> Iterator[str]:
    """Start a temporary Prefect server, yield its API URL, stop it. ``services``: run the
    scheduler and the other background services too (what ``vrme serve`` needs for cron
    schedules); a plain run needs none. ``say`` prints a message to the user."""
    db = sqlite_database()
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / LOG_NAME
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env["PREFECT_UI_ENABLED"] = "0"
    if not services:
        env["PREFECT__SERVER_EPHEMERAL"] = "1"
    env.pop("PREFECT_API_URL", None)
    proc = None
    try:
        with _startup_lock(home):
            if not check_database(db):
                say(f"First run with Prefect home {home}: preparing its database "
                    f"{db or ''} (this takes up to a minute, once)")
            for attempt in range(3):
                port = free_port()
                api_url = f"http://127.0.0.1:{port}/api"
                with open(log_path, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "flows.tempserver", str(port), str(os.getpid())],
                        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
                if _wait_healthy(proc, api_url, log_path, say, last=attempt == 2):
                    break
        yield api_url
    finally:
        if proc is not None:
            stop(proc)


def _wait_healthy(proc: subprocess.Popen, api_url: str, log_path: Path,
                  say: Callable[[str], None], last: bool) -> bool:
    """Wait for the server; False when it failed to start (exit code 3: a port taken, a
    migration another process made meanwhile) and another attempt may work."""
    allowance = startup_allowance()
    t0 = time.monotonic()
    told = False
    while not healthy(api_url, timeout=1.0):
        if proc.poll() is not None:
            if proc.returncode == 3 and not last:
                return False
            raise PrefectStateError(f"Prefect's temporary server exited (code {proc.returncode}) "
                                    f"before it answered: {_tail(log_path)} (full log: "
                                    f"{log_path})")
        waited = time.monotonic() - t0
        if waited > allowance:
            stop(proc)
            raise PrefectStateError(f"Prefect's temporary server did not answer within "
                                    f"{allowance:.0f} s (log: {log_path}); raise "
                                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or start "
                                    "one with `prefect server start` and set PREFECT_API_URL")
        if waited > 15 and not told:
            say("Still waiting for Prefect's temporary server (a first start migrates its "
                "database)...")
            told = True
        time.sleep(0.25)
    return True


def _tail(path: Path, n: int = 600) -> str:
    try:
        text = path.read_text(errors="replace")[-n:]
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def stop(proc: subprocess.Popen) -> None:
    """Stop the server process (its whole session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)


def main(argv: list[str]) -> None:  # pragma: no cover - runs as its own process
    port, parent = int(argv[0]), int(argv[1])
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1",
                port=port, log_level="error", lifespan="on")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

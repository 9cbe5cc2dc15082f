"""Atomic file writes, Parquet helpers and content fingerprints.

Every file vrme writes goes through :func:`atomic_path` (a folder written as a whole, such as a
synthetic video's frames, through :func:`atomic_folder`): the data is written to a temporary name
in the same folder and renamed over the target only when complete, so a killed run never leaves a
half-written file under a final name. Stale temporaries (``*.tmp-<pid>-<host>-<rand>``) left by
a killed process are ignored by readers and removed by :func:`remove_stale_temporaries` (every
run calls :func:`clean_work_folder` when it starts).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyarrow is imported where used: the synthetic renderers need only files
    import pyarrow as pa

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"

FOREIGN_TMP_AGE_S = 86400.0
"""A temporary written on another machine is removed once it is this old (seconds)."""


class WriteError(OSError):
    """Writing an output failed; the message names the file and the reason."""


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it to ``target`` on success.

    On any exception the temporary file is removed and the exception re-raised (an ``OSError``
    is wrapped in :class:`WriteError` naming ``target``). ``keep_suffix``: the temporary name
    ends in ``target``'s suffix too (for writers that choose the format by it, e.g. OpenCV's
    VideoWriter).
    """
    target = Path(target)
    ensure_folder(target.parent)
    tmp = _temporary_name(target)
    if keep_suffix:
        tmp = tmp.with_name(tmp.name + target.suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError(f"nothing was written to {target}")
        # the data is on disk before the name points at it (power loss, not just a kill)
        _fsync(tmp)
        _injected_disk_full(target, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, WriteError):
            raise
        raise WriteError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temporary folder next to ``target``; on success replace ``target`` (and
    whatever it held) with it. On any exception the temporary folder is removed and the
    exception re-raised."""
    import shutil

    target = Path(target)
    ensure_folder(target.parent)
    tmp = _temporary_name(target)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


FAULT_DISK_FULL_ENV = "VRME_FAULT_DISK_FULL"
"""Test-only fault: a file-name pattern (``fnmatch``, e.g. ``labels.parquet``); every atomic
write of a file of that name then fails as on a full disk (ENOSPC), in this process and in the
processes it starts (a flow's child process, task-runner workers). Never set it otherwise."""


def _injected_disk_full(target: Path, tmp: Path) -> None:
    import errno
    import fnmatch

    pattern = os.environ.get(FAULT_DISK_FULL_ENV)
    if pattern and fnmatch.fnmatch(target.name, pattern):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))


def _temporary_name(target: Path) -> Path:
    """``<target>.tmp-<pid>-<host>-<random>``: what :func:`remove_stale_temporaries` knows."""
    return target.with_name(
        f"{target.name}{TMP_MARK}{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}")


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Make ``dst`` the same file as ``src``: a hard link, put in place atomically (``dst``
    replaced), or an atomic copy where a link is impossible (another file system). A later
    atomic rewrite of ``src`` leaves ``dst`` with the old content, as a copy would."""
    src, dst = Path(src), Path(dst)
    ensure_folder(dst.parent)
    if dst.exists() and os.path.samefile(src, dst):
        return dst
    tmp = _temporary_name(dst)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        _unlink_quietly(tmp)
        write_bytes_atomic(dst, src.read_bytes())
    return dst


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) if needed; :class:`WriteError` names it on failure
    (a read-only or full file system)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(exc.errno, f"cannot create folder {folder}: {exc.strerror}") from exc
    return folder


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(p: Path) -> None:
    with contextlib.suppress(OSError):
        p.unlink()


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the path."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``target`` atomically and return the path."""
    return write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet_atomic(
    target: str | os.PathLike[str], table: pa.Table, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write an Arrow table to ``target`` atomically; ``metadata`` values are stored as JSON
    strings in the schema metadata under their keys."""
    import pyarrow.parquet as pq

    if metadata:
        meta = dict(table.schema.metadata or {})
        for key, value in metadata.items():
            meta[key.encode()] = json.dumps(value, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(target)


def read_parquet_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON-decoded schema metadata vrme stored in a Parquet file (pandas keys dropped)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    out: dict[str, Any] = {}
    for k, v in (schema.metadata or {}).items():
        key = k.decode()
        if key.startswith("pandas") or key == "ARROW:schema":
            continue
        try:
            out[key] = json.loads(v)
        except (ValueError, UnicodeDecodeError):
            out[key] = v.decode(errors="replace")
    return out


@functools.cache
def _host_tag() -> str:
    """Six hex digits naming this machine in temporary names (pids are per machine)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def remove_stale_temporaries(folder: str | os.PathLike[str],
                             foreign_age_s: float = FOREIGN_TMP_AGE_S) -> list[Path]:
    """Delete temporaries left by killed writers under ``folder``; return what was removed.

    A temporary written on this machine is removed when its writer process is gone (or is
    this process: a pid reused after a restart), so a concurrent run's in-progress temporary
    is left alone; call it before this process starts writing. A temporary from another
    machine (a shared work folder) is removed only once it is ``foreign_age_s`` seconds old.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.rglob(f"*{TMP_MARK}*"):
        parts = p.name.rsplit(TMP_MARK, 1)[1].split("-")
        try:
            pid = int(parts[0])
        except ValueError:
            continue
        if len(parts) == 3 and parts[1] != _host_tag():
            try:
                if now - p.stat().st_mtime < foreign_age_s:
                    continue
            except OSError:
                continue
        elif _pid_alive(pid) and pid != os.getpid():
            continue
        _unlink_quietly(p)
        removed.append(p)
    return removed


def clean_work_folder(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove stale temporaries (:func:`remove_stale_temporaries`) from the folders vrme writes
    under a work folder (:data:`vrme.catalog.WORK_FOLDERS`), log how many, and return them. Runs
    call it when they start, before they write anything."""
    removed: list[Path] = []
    from vrme.catalog import WORK_FOLDERS

    for name in WORK_FOLDERS:
        removed += remove_stale_temporaries(Path(out_dir) / name)
    if removed:
        log.warning("removed %d unfinished temporary file(s) left by stopped runs under %s",
                    len(removed), out_dir)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fingerprint_files(paths: list[Path] | list[str], *, content_bytes: int = 0) -> str:
    """Fingerprint of a list of files from their names, sizes and modification times.

    With ``content_bytes`` > 0 the first that many bytes of every file are hashed as well.
    Cheap enough for millions of frames; changes when a frame is replaced, added or removed.
    """
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if content_bytes:
            with open(p, "rb") as fh:
                h.update(fh.read(content_bytes))
    return h.hexdigest()[:16]


def fingerprint_file(path: str | os.PathLike[str]) -> str:
    """Content hash (sha256, 16 hex) of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]

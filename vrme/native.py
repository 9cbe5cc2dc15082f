"""C kernels built on first use: vrme's compiled loops (the fused selective scan,
:mod:`vrme.model.fused`; the Farneback flow, :mod:`vrme.features._native`).

:func:`build` compiles one C source into a shared library for this CPU (``-march=native``,
with 512-bit vectors where the compiler accepts them) with the C compiler in ``$CC``, else
``cc``, ``gcc`` or ``clang`` on the PATH, and loads it with :mod:`ctypes`. The library is cached
under ``$VRME_KERNEL_CACHE`` (default ``~/.cache/vrme/kernels``; the temp folder when that is not
writable), one file per source, compiler, flags and CPU, so later processes load it at once.
Without a compiler it raises :class:`RuntimeError` saying why, and the callers fall back to
their pure-Python-stack paths (PyTorch, numba).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

BASE_FLAGS = ["-O3", "-fopenmp-simd", "-fPIC", "-shared"]
# For this CPU, with 512-bit vectors where it has them (gcc prefers 256 by default): the
# first set the compiler accepts.
ARCH_FLAGS = (["-march=native", "-mprefer-vector-width=512"], ["-march=native"],
              ["-mcpu=native"], [])


def cache_dir() -> Path:
    env = os.environ.get("VRME_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vrme" / "kernels"


def cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    keep = [ln for ln in text.splitlines()
            if ln.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")]
    return "\n".join(sorted(set(keep)))


def compiler() -> str | None:
    """The C compiler to use, or None."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or cc
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def build(source: Path, extra_flags: Sequence[str] = ()) -> tuple[ctypes.CDLL, Path]:
    """Compile (or load the cached) library of ``source``; raises RuntimeError saying why
    not."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set $CC, or install cc, gcc or clang)")
    try:
        version = _run([cc, "--version"]).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"the C compiler {cc} does not run: {exc}") from None
    text = source.read_bytes()
    errors = []
    for arch in ARCH_FLAGS:
        flags = BASE_FLAGS + list(extra_flags) + arch
        key = hashlib.sha256(b"\0".join(
            [text, cc.encode(), "\n".join(version).encode(), " ".join(flags).encode(),
             cpu_signature().encode()])).hexdigest()[:16]
        for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"vrme-kernels-{os.getuid()}"):
            lib_path = folder / f"{source.stem}-{key}.so"
            if not lib_path.is_file():
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    tmp = folder / f".{lib_path.name}.{os.getpid()}.{threading.get_ident()}"
                    res = _run([cc, *flags, str(source), "-o", str(tmp), "-lm"])
                except OSError as exc:  # the folder is not writable: try the next one
                    errors.append(f"{folder}: {exc}")
                    continue
                if res.returncode != 0:
                    tmp.unlink(missing_ok=True)
                    errors.append(f"{cc} {' '.join(flags)}: {res.stderr.strip()[-500:]}")
                    break  # these flags do not work: try the next ones
                os.replace(tmp, lib_path)
                log.info("compiled %s into %s", source.name, lib_path)
            try:
                return ctypes.CDLL(str(lib_path)), lib_path
            except OSError as exc:
                errors.append(f"loading {lib_path}: {exc}")
                break
    raise RuntimeError(f"could not build {source.name}: " + " | ".join(errors))

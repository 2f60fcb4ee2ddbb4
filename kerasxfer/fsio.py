"""Files written whole or not at all, and JSON: the lowest layer of every file kerasxfer writes (no TensorFlow).

Every file goes through :func:`atomic_path`: a temporary name in the same
folder, renamed over the target only once complete, so a crash never leaves a
half-written file.  :mod:`kerasxfer.rundir` (what a run folder holds) and the
data and model layers (decoded-image caches, converted weights) write with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os

_TMP_NUMBERS = itertools.count(1)


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the extension (``.tmp-<pid>-<n>-model.keras``),
    since some writers choose the format by it, and is unique to this call,
    so two processes writing the same file at once each finish (the last
    rename wins, and either file is whole).  When the block raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}-{next(_TMP_NUMBERS)}-{os.path.basename(path)}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str):
    """Yield a temporary folder beside ``path``; it replaces ``path`` when the block succeeds, and is removed
    (``path`` left as it was) when the block raises: a full disk leaves no half-written folder."""
    import shutil

    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}-{next(_TMP_NUMBERS)}-{os.path.basename(path)}")
    try:
        yield tmp
        old = f"{tmp}.old"
        if os.path.lexists(path):
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (numpy scalars and arrays become numbers and lists)."""
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(o):
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux' MemAvailable), None where that is unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sha256_of(path: str) -> str:
    """sha256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

"""What a frozen backbone computes from the images of a decoded source, kept once for every run that reads it.

:class:`ActivationStore` holds, per key, one array over the source's pool
(:data:`kerasxfer.data.pipeline.SPLITS` in order); :func:`pool_fingerprint`
is what its files are keyed by.  :mod:`kerasxfer.features` fills it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Optional

import numpy as np

from kerasxfer import fsio

log = logging.getLogger("kerasxfer")
SPLITS = ("train", "val", "test")


def pool_fingerprint(decoded) -> str:
    """sha256 of the decoded pixels of every split (size and resize included), computed once: what cached
    backbone outputs of these images are keyed by."""
    if decoded.whole is not None:
        return pool_fingerprint(decoded.whole)
    if decoded.pool_content is None:
        h = hashlib.sha256()
        for name in SPLITS:
            a = decoded.images[name]
            h.update(f"{name}{a.shape}{a.dtype}".encode())
            for start in range(0, len(a), 256):
                h.update(np.ascontiguousarray(a[start : start + 256]).tobytes())
        decoded.pool_content = h.hexdigest()
    return decoded.pool_content


class ActivationStore:
    """What a frozen backbone computes from every image of a decoded source, per key, computed once.

    Each entry is one array over the source's pool (train, val and test in
    :data:`SPLITS` order: every fold's rows are in it) — the pooled features
    of the frozen phase, or the activations where the trainable stages begin
    — kept in memory and, with ``cache_dir``, in ``activations-<fingerprint>.npy``
    there (memory-mapped), so a study that runs again reads them back.  The
    fingerprint covers the key (backbone, weights, precision, size, where the
    backbone is cut) and the decoded pixels, so any change computes them anew.
    """

    def __init__(self, cache_dir: Optional[str] = None):
        self.dir, self.arrays = cache_dir, {}

    def get(self, key, whole, compute) -> tuple:
        """``(array over the pool, seconds it cost, reused)``; ``compute()`` makes the array when not stored.

        A stored file is used only when it passes :func:`_verified` (the shape, dtype and checksum recorded
        beside it, one row per image of the pool, every value finite); one that fails is computed again
        with one log line, never trusted."""
        if key in self.arrays:
            return (*self.arrays[key], True)
        path = None
        if self.dir:
            fp = hashlib.sha256(f"{key!r}|{pool_fingerprint(whole)}".encode()).hexdigest()[:32]
            path = os.path.join(self.dir, f"activations-{fp}.npy")
            found = _read(path, _pool_size(whole))
            if found is not None:
                self.arrays[key] = found
                log.info("frozen backbone outputs read from %s (computed by an earlier run of this study)", path)
                return (*found, True)
        t0 = time.perf_counter()
        arr = compute()
        seconds = time.perf_counter() - t0
        if path:
            try:
                os.makedirs(self.dir, exist_ok=True)
                with fsio.atomic_path(path) as tmp:
                    np.save(tmp, arr)
                record = {"key": repr(key), "seconds": seconds, "shape": list(arr.shape), "dtype": str(arr.dtype)}
                fsio.write_json(path + ".json", {**record, "sha256": _checksum(arr)[0]})
                arr = np.load(path, mmap_mode="r")
            except OSError as e:
                log.warning(
                    "the frozen backbone outputs could not be cached in %s (%s): they stay in memory", self.dir, e.strerror or e
                )
        self.arrays[key] = (arr, seconds)
        return arr, seconds, False


def _pool_size(decoded) -> int:
    decoded = decoded.whole if decoded.whole is not None else decoded
    return sum(len(decoded.images[name]) for name in SPLITS)


def _checksum(arr) -> tuple:
    """``(sha256 of the array's bytes, every value finite?)``, read in blocks of rows."""
    h, finite = hashlib.sha256(), True
    for start in range(0, len(arr), 256):
        block = np.ascontiguousarray(arr[start : start + 256])
        h.update(block.tobytes())
        finite = finite and bool(np.isfinite(block).all())
    return h.hexdigest(), finite


def _read(path: str, rows: int):
    """``(array, seconds)`` of the cache file ``path`` when it is there and passes every check, else None (a
    file that is there but fails is named in one log line: it is computed again and overwritten)."""
    if not os.path.exists(path):
        return None
    try:
        arr = np.load(path, mmap_mode="r")
        with open(path + ".json") as f:
            record = json.load(f)
        seconds = float(record["seconds"])
        why = None
        if list(arr.shape) != list(record["shape"]) or str(arr.dtype) != record.get("dtype", str(arr.dtype)):
            why = f"its shape {arr.shape} {arr.dtype} is not the {tuple(record['shape'])} {record.get('dtype')} recorded"
        elif not arr.ndim or arr.shape[0] != rows:
            why = f"it has {arr.shape[0] if arr.ndim else 0} rows for {rows} images"
        else:
            digest, finite = _checksum(arr)
            if digest != record.get("sha256"):
                why = "its checksum does not match the one recorded (the file changed after it was written)"
            elif not finite:
                why = "it holds NaN or infinite values"
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        why = f"it cannot be read ({getattr(e, 'strerror', None) or e})"
    if why:
        log.warning("the cached frozen backbone outputs %s failed their check: %s; computing them again", path, why)
        return None
    return arr, seconds

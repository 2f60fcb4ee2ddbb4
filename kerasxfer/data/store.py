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
        """``(array over the pool, seconds it cost, reused)``; ``compute()`` makes the array when not stored."""
        if key in self.arrays:
            return (*self.arrays[key], True)
        path = None
        if self.dir:
            fp = hashlib.sha256(f"{key!r}|{pool_fingerprint(whole)}".encode()).hexdigest()[:32]
            path = os.path.join(self.dir, f"activations-{fp}.npy")
            try:
                arr = np.load(path, mmap_mode="r")
                with open(path + ".json") as f:
                    seconds = float(json.load(f)["seconds"])
                self.arrays[key] = (arr, seconds)
                log.info("frozen backbone outputs read from %s (computed by an earlier run of this study)", path)
                return arr, seconds, True
            except (OSError, ValueError, KeyError, TypeError, EOFError):
                pass
        t0 = time.perf_counter()
        arr = compute()
        seconds = time.perf_counter() - t0
        if path:
            try:
                os.makedirs(self.dir, exist_ok=True)
                with fsio.atomic_path(path) as tmp:
                    np.save(tmp, arr)
                fsio.write_json(path + ".json", {"key": repr(key), "seconds": seconds, "shape": list(arr.shape)})
                arr = np.load(path, mmap_mode="r")
            except OSError as e:
                log.warning(
                    "the frozen backbone outputs could not be cached in %s (%s): they stay in memory", self.dir, e.strerror or e
                )
        self.arrays[key] = (arr, seconds)
        return arr, seconds, False

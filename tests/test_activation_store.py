"""The activation cache (kerasxfer.data.store) trusts a file only when it is what was written (issue 43).

A zeroed .npy flipped a verdict, one of the wrong shape under the right name was an IndexError traceback, NaN
rows gave NaN losses on every rerun: each is now computed again, with one log line, and written anew.
"""

import logging
import types

import numpy as np
import pytest

from kerasxfer.data.store import ActivationStore


def _decoded():
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8) for s, n in (("train", 6), ("val", 2), ("test", 3))}
    return types.SimpleNamespace(whole=None, images=images, pool_content=None)


def _features():
    return np.arange(11 * 4, dtype=np.float32).reshape(11, 4) / 7.0


def _zeroed(path):
    arr = np.load(path)
    arr[:] = 0
    np.save(path, arr)


def _reshaped(path):
    np.save(path, np.ones((5, 4), np.float32))


def _nan_rows(path):
    arr = np.load(path)
    arr[2:4] = np.nan
    np.save(path, arr)


def _truncated(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _no_record(path):
    import os

    os.remove(path + ".json")


@pytest.mark.parametrize("damage", [_zeroed, _reshaped, _nan_rows, _truncated, _no_record])
def test_a_damaged_cache_file_is_computed_again_with_one_line(tmp_path, caplog, damage):
    calls = []

    def compute():
        calls.append(1)
        return _features()

    arr, _, reused = ActivationStore(str(tmp_path)).get("k", _decoded(), compute)
    assert not reused and len(calls) == 1
    (path,) = tmp_path.glob("activations-*.npy")
    damage(str(path))
    with caplog.at_level(logging.INFO, logger="kerasxfer"):
        arr, _, reused = ActivationStore(str(tmp_path)).get("k", _decoded(), compute)
    assert not reused and len(calls) == 2
    np.testing.assert_array_equal(np.asarray(arr), _features())
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if damage is not _no_record:  # a file with no record beside it was never finished: nothing to say
        assert len(warned) == 1 and "failed their check" in warned[0] and "computing them again" in warned[0], warned
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kerasxfer"):  # written anew: the next study trusts it again
        arr, _, reused = ActivationStore(str(tmp_path)).get("k", _decoded(), compute)
    assert reused and len(calls) == 2 and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    np.testing.assert_array_equal(np.asarray(arr), _features())


def test_a_cache_written_for_other_images_is_not_read(tmp_path):
    store = ActivationStore(str(tmp_path))
    store.get("k", _decoded(), _features)
    other = _decoded()
    other.images["test"][0, 0, 0, 0] ^= 1  # one pixel of one test image changed
    calls = []
    ActivationStore(str(tmp_path)).get("k", other, lambda: calls.append(1) or _features())
    assert calls == [1]

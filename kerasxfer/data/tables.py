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
import stat

import numpy as np

from kerasxfer.data.decode import DEFAULT_MAX_PIXELS, check_images, decode_image_file
from kerasxfer.data.split import SourceSplit, Split
from kerasxfer.data.splitting import carve_missing, check_train_classes, merge_counts, split_three
from kerasxfer.datasets import registered_arrays
from kerasxfer.errors import UserError, printable

#: Files above this size are not hashed for copies (the image check refuses files that large anyway).
MAX_HASHED_BYTES = 1 << 30
SPLIT_WORDS = {"": "train", "train": "train", "val": "val", "validation": "val", "test": "test"}


def read_table(path: str) -> tuple[list, bool]:
    """The rows ``(path, label, split)`` of a CSV (comma) or TSV (tab) file, and whether it has a split column.

    An optional header (``path,label[,split]`` or the like: :data:`HEADER_WORDS`), blank lines and lines
    starting with ``#`` are skipped; a quoted ``"#x.png"`` is a path.
    """
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    rows, with_split, seen = [], False, {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            numbers = []  # the line each row ends on
            for row in csv.reader(_uncommented(f, numbers), delimiter=delimiter):
                n, cells = numbers[-1], [c.strip() for c in row]
                if not any(cells):
                    continue
                if not rows and _is_header(cells):
                    continue
                if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
                    raise UserError(
                        f"{path} line {n} is not path,label or path,label,split ({len(cells)} fields: "
                        f"{printable(delimiter.join(row))[:80]!r}): fix that line."
                    )
                if "\x00" in cells[0]:
                    raise UserError(
                        f"{path} line {n}: the path holds a NUL byte ({printable(cells[0])[:80]!r}), which "
                        "no file name can: fix that line."
                    )
                split = cells[2].lower() if len(cells) == 3 else ""
                if split not in SPLIT_WORDS:
                    raise UserError(f"{path} line {n}: split {cells[2]!r} is unknown: use train, val or test (empty: train).")
                key = os.path.normcase(os.path.realpath(resolve(path, cells[0])))  # ./a.png, /abs/a.png: one file
                if key in seen:
                    first, line = seen[key]
                    same = f"{first!r} twice" if first == cells[0] else f"one file twice ({first!r}, {cells[0]!r})"
                    raise UserError(
                        f"{path} lists {same} (lines {line} and {n}): keep one row per image (a file in "
                        "two rows could be trained on and tested on)."
                    )
                seen[key] = (cells[0], n)
                with_split |= bool(split)
                rows.append((cells[0], cells[1], SPLIT_WORDS[split]))
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): save the table as UTF-8 CSV.") from None
    except csv.Error as e:
        raise UserError(f"{path} is not a readable CSV/TSV file ({e}): fix it and run again.") from None
    if not rows:
        raise UserError(f"{path} has no rows: write one path,label row per image.")
    return rows, with_split


HEADER_WORDS = (
    {"path", "file", "filename", "file_name", "filepath", "image", "image_path", "img"},
    {"label", "class", "class_name", "category", "target"},
    {"split", "subset"},
)


def _is_header(cells: list) -> bool:
    """A first row of column names (``path,label``, ``file,class``, ``image,category,split``, ...)."""
    return 2 <= len(cells) <= 3 and all(c.lower() in words for c, words in zip(cells, HEADER_WORDS))


def _uncommented(lines, numbers: list):
    """The lines of a table that are not comments (a ``#`` first: a quoted ``"#x.png"`` is a path), each
    line's number appended to ``numbers``."""
    for n, line in enumerate(lines, 1):
        if not line.lstrip().startswith("#"):
            numbers.append(n)
            yield line


def drop_copies(table: str, rows: list) -> list:
    """``rows`` without the rows whose file holds the same bytes as an earlier row's (a copy under another name
    would be trained on and tested on), said in one log line; the same bytes under two labels is refused."""
    import hashlib
    import logging

    first, kept, dropped = {}, [], []
    for row in rows:
        try:
            file = resolve(table, row[0])
            st = os.stat(file)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_HASHED_BYTES:
                raise ValueError("not a regular image file")
            with open(file, "rb") as f:
                digest = hashlib.blake2b(f.read(), digest_size=16).digest()
        except (OSError, ValueError):
            kept.append(row)  # a FIFO, a device, unreadable: the image check skips or refuses it, with its reason
            continue
        if digest not in first:
            first[digest] = row
            kept.append(row)
        elif first[digest][1] != row[1]:
            a = first[digest]
            raise UserError(
                f"{table}: {a[0]!r} (label {a[1]!r}) and {row[0]!r} (label {row[1]!r}) are the same "
                "image (identical bytes) under two labels: give it one label and drop the other row."
            )
        else:
            dropped.append(row[0])
    if dropped:
        logging.getLogger("kerasxfer").info(
            "%s: %d row(s) repeat an earlier row's image byte for byte (%s): each image is used once",
            table,
            len(dropped),
            ", ".join(repr(d) for d in dropped[:3]) + (", ..." if len(dropped) > 3 else ""),
        )
    return kept


def resolve(table: str, path: str) -> str:
    """A path as a table lists it, resolved: relative to the table's folder; absolute and ``~`` as they are."""
    return os.path.join(os.path.dirname(os.path.abspath(table)), os.path.expanduser(path))


def table_source(
    path: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    on_bad_image: str = "skip",
    image_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SourceSplit:
    """The images a CSV/TSV table lists, split three ways (see the module's docstring)."""
    rows, with_split = read_table(path)
    rows = drop_copies(path, rows)
    class_names = sorted({label for _, label, _ in rows})
    if len(class_names) < 2:
        raise UserError(f"{path} has a single label ({class_names[0]}): classification needs at least 2.")
    index = {c: i for i, c in enumerate(class_names)}
    decode = functools.partial(decode_image_file, min_side=image_size)

    def part(selected, origin):
        paths = [resolve(path, p) for p, _, _ in selected]
        return Split(
            np.array(paths, dtype=object),
            np.array([index[lab] for _, lab, _ in selected], np.int32),
            [p for p, _, _ in selected],
            origin,
        )

    groups = {s: [r for r in rows if r[2] == s] for s in ("train", "val", "test")} if with_split else {"train": rows}
    parts, bad, counts = {}, [], None
    for split, selected in groups.items():
        if not selected:
            continue
        p, c, b = check_images(
            part(selected, f"the {split} rows" if with_split else "the table"),
            class_names,
            on_bad_image,
            path,
            decode,
            max_pixels,
        )
        parts[split], bad, counts = p, bad + b, c if counts is None else merge_counts(counts, c)
    if "train" not in parts:
        raise UserError(f"{path} has no train rows: mark the training images train (or leave their split empty).")
    if with_split:
        carve_missing(parts, val_fraction, test_fraction, seed, class_names)
        layout = "splits from its split column" + ("" if all(groups.values()) else ", the missing ones carved from train by seed")
    else:
        parts["train"], parts["val"], parts["test"] = split_three(parts["train"], val_fraction, test_fraction, seed, class_names)
        layout = f"split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%} by seed {seed}"
    check_train_classes(parts["train"], class_names, f" in {path}")
    for p in parts.values():
        p.x = p.x.astype(str)
    return SourceSplit.from_parts(
        parts, class_names, decode, f"table {os.path.abspath(path)} ({len(rows)} rows, {layout})", bad, counts
    )


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
    return SourceSplit(
        train,
        val,
        test,
        class_names=class_names,
        decode=lambda e: e,
        description=f"arrays from Python ({len(y)} images of {x.shape[1]}x{x.shape[2]}, {name})",
    )

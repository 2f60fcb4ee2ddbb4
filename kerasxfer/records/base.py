"""The records' shared parts: figure names, JSON field names, :func:`to_json` (no TensorFlow)."""

from __future__ import annotations

import dataclasses

#: The figures a verdict can compare, as the report's sentences name them.
FIGURES = ("accuracy", "balanced accuracy")


def field_of(figure: str) -> str:
    """The record field of a figure: ``"balanced accuracy"`` -> ``balanced_accuracy``."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}: one of {FIGURES}")
    return figure.replace(" ", "_")


def json_name(name: str, omit_none: bool = False):
    """A field whose JSON key differs from its name (``from``, a keyword), or that is left out when None."""
    return {"json": name, "omit_none": omit_none}


OMIT_NONE = {"omit_none": True}


def to_json(value):
    """A record (and what it holds) as JSON data: dataclasses by field, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get("internal") or (v is None and f.metadata.get("omit_none")):
                continue
            out[f.metadata.get("json", f.name)] = to_json(v)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def pick(cls, d: dict, **override):
    """``cls`` from the keys of ``d`` it has fields for (JSON names honoured), then ``override``."""
    names = {f.metadata.get("json", f.name): f.name for f in dataclasses.fields(cls)}
    return cls(**{**{names[k]: v for k, v in d.items() if k in names}, **override})

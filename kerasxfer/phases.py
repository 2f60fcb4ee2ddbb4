"""The phase plan of a run: which epochs each phase trains, and what is left to train (pure: no TensorFlow).

A run's phases share one epoch axis: phase 1 trains epochs 1..E1, phase 2
E1+1..E1+E2, and so on.  Early stopping may end a phase sooner; its record
in ``history.json`` (``early_stopped``, the real ``last_epoch``) then moves
every later phase forward.  :func:`phase_spans` reads that from the history,
so the trainer, a resumed run and the progress line compute the same ranges
from the same facts, and :func:`next_phase` says what the trainer does next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from kerasxfer.errors import UserError


class PhaseSpan(NamedTuple):
    """Phase ``index`` of the run trains epochs ``first + 1 .. last`` (1-based; ``first == last``: none)."""

    index: int  # type: ignore[assignment]  # the phase's place in the plan (shadows tuple.index, unused here)
    phase: object  # a kerasxfer.config.PhaseConfig
    first: int
    last: int


@dataclass
class PhaseContext:
    """One phase of a run as it trains: what its callbacks (:func:`kerasxfer.callbacks.phase_callbacks`), its
    history record and its log line read."""

    exp: object  # the kerasxfer.config.Experiment
    span: PhaseSpan
    steps: dict  # the phase's learning-rate schedule (kind, total and warm-up steps)
    history: dict  # history.json as it grows
    timings: dict  # timings.json as it grows
    num_train: int
    steps_per_epoch: int
    model: object  # the whole network: checkpointed and saved in the resume state, whatever fit trains
    out: str  # the run directory

    @property
    def phase(self):
        return self.span.phase


def phase_end(history: dict, phase, planned: int) -> int:
    """The phase's last epoch: ``planned``, or the epoch early stopping ended it at (as history records)."""
    record: dict = next((p for p in history["phases"] if p["name"] == phase.name), {})
    return record["last_epoch"] if record.get("early_stopped") else planned


def phase_spans(phases, history: dict) -> list:
    """The :class:`PhaseSpan` of every phase, early-stopped phases ending where they ended."""
    spans, last = [], 0
    for index, phase in enumerate(phases):
        first, last = last, phase_end(history, phase, last + phase.epochs)
        spans.append(PhaseSpan(index, phase, first, last))
    return spans


def next_phase(phases, history: dict, done: int):
    """The span to train after ``done`` finished epochs (it may resume inside it), or None: nothing is left.

    Nothing is left once every phase's epochs are done, or once the run stopped (a NaN loss: ``stopped``) or
    ended early (its time budget: ``ended_early``).
    """
    if history.get("stopped") or history.get("ended_early"):
        return None
    return next((s for s in phase_spans(phases, history) if s.phase.epochs and done < s.last), None)


def activations_off(exp, phase):
    """Why ``phase`` of ``exp`` trains the whole model instead of its unfrozen stages on the activations where
    they begin, computed once (:mod:`kerasxfer.features`); None when it need not."""
    if not (exp.model.is_transfer and phase.trainable.startswith("stages:")):
        return "it is not a transfer phase that trains the last stages"
    if exp.cache_features is False:
        return "--nocache_features"
    if not exp.features_valid():
        return "the images change every epoch (augmentation, MixUp or CutMix)"
    if exp.optim.bn == "train":
        return "--bn=train trains every BatchNorm of the backbone"
    if exp.precision != "float32":
        return f"--precision={exp.precision}"
    return None


def parse_trainable(rule: str, num_stages: int):
    """``"all"`` -> ("all", None); ``"head"`` -> ("head", None); ``"stages:K"`` -> ("stages", K), 0 <= K <= num_stages."""
    if rule in ("all", "head"):
        return rule, None
    if rule.startswith("stages:"):
        try:
            k = int(rule.split(":", 1)[1])
        except ValueError:
            k = -1
        if 0 <= k <= num_stages:
            return "stages", k
        raise UserError(
            f"--unfreeze_stages must be an integer from 0 to {num_stages} (the backbone has {num_stages} stages), "
            f"got {rule[7:]!r}."
        )
    raise UserError(f"trainable rule {rule!r} is unknown: use all, head or stages:K.")

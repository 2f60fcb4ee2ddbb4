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

#: A phase's epochs at most.
MAX_EPOCHS = 2000


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


@dataclass
class PhaseConfig:
    """One training phase: ``epochs`` (at most MAX_EPOCHS) at learning rate ``lr``; ``trainable`` is ``"all"`` (every
    layer; of a transfer model: the whole backbone, stem included, BatchNorm frozen), ``"head"`` (backbone frozen) or
    ``"stages:K"`` (the last K backbone stages unfrozen, BatchNorm frozen)."""

    name: str
    epochs: int
    lr: float
    trainable: str = "all"
    # Train until converged: with patience P > 0 the phase ends after P epochs without a lower val_loss, once it
    # has trained min_epochs; ``epochs`` is then its cap (a study's frozen phase, whose epochs cost little).
    patience: int = 0
    min_epochs: int = 0
    # A head-only phase solved instead of trained (kerasxfer.probe: standardised features, L2 logistic regression,
    # its strength chosen on validation): one entry on the epoch axis, whatever ``epochs`` > 0 says.
    solve: bool = False
    # Linear learning-rate warm-up over this many epochs at the phase's start (0: the optim's --warmup_epochs).
    warmup_epochs: float = 0.0

    def validate(self, num_stages: int) -> None:
        """Check the phase for a backbone of ``num_stages`` stages."""
        if not isinstance(self.epochs, int) or not 0 <= self.epochs <= MAX_EPOCHS:
            raise UserError(
                f"the {self.name} phase has {self.epochs} epochs: use an integer from 0 to {MAX_EPOCHS:,} "
                "(a phase's epochs are set up before it starts; for longer training use more data)."
            )
        if not (
            isinstance(self.patience, int)
            and isinstance(self.min_epochs, int)
            and self.patience >= 0
            and 0 <= self.min_epochs <= self.epochs
        ):
            raise UserError(
                f"the {self.name} phase's patience {self.patience} and minimum {self.min_epochs} epochs "
                f"must be whole numbers, the minimum at most its {self.epochs} epochs."
            )
        if not (self.lr > 0.0 and self.lr < 10.0):
            raise UserError(f"the {self.name} phase learning rate {self.lr} must be a positive number below 10.")
        parse_trainable(self.trainable, num_stages)
        if not (isinstance(self.warmup_epochs, (int, float)) and 0.0 <= self.warmup_epochs <= 1000):
            raise UserError(
                f"the {self.name} phase's warm-up of {self.warmup_epochs} epochs must be 0 (off) or a positive number "
                "of epochs, e.g. 2."
            )
        if self.solve and (self.trainable != "head" or self.epochs > 1 or self.patience):
            raise UserError(
                f"the {self.name} phase is solved (--frozen_head=solve), which only a head-only phase of one entry "
                "can be: pass --frozen_head=epochs to train it by epochs."
            )


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

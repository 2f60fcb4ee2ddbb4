"""What every phase of a run needs before its first epoch: its optimiser compiled and its beginning announced.

:func:`compile_for_phase` compiles the model a phase trains (the whole transfer model, its head on cached
features, or its unfrozen stages on cached activations) with the phase's recipe after every change of
``trainable``; :func:`announce_phase` writes the phase's record into history.json, its log line and its
TensorBoard marker.  Both serve :mod:`kerasxfer.training` (phases trained by epochs) and
:mod:`kerasxfer.solved` (a frozen phase solved), and ``lr_find``.
"""

from __future__ import annotations

import logging
import os

import keras

from kerasxfer import run_files, rundir, tensorboard
from kerasxfer.config import Experiment
from kerasxfer.evaluation import count_params
from kerasxfer.optim_config import schedule_steps
from kerasxfer.optimizers import make_loss, make_optimizer, stage_multipliers
from kerasxfer.phases import PhaseContext

log = logging.getLogger("kerasxfer")


def compile_for_phase(
    model: keras.Model, exp: Experiment, phase, steps_per_epoch: int, full_model: keras.Model | None = None
) -> dict:
    """Compile ``model`` with a fresh optimiser for ``phase`` (after every change of ``trainable``).

    The recipe of ``exp.optim``: optimiser, the phase's schedule over its
    ``phase.epochs * steps_per_epoch`` steps, per-stage rates of a transfer
    model's backbone (``full_model`` when ``model`` is its head), label
    smoothing, clipping, EMA.  Returns the schedule in steps (history records it).
    """
    o = exp.optim
    steps = schedule_steps(o, phase.epochs, steps_per_epoch, phase.warmup_epochs)
    multipliers = None
    if o.lr_stage_decay != 1.0 and exp.model.is_transfer and phase.trainable != "head":
        multipliers = stage_multipliers(full_model or model, model.trainable_variables, o.lr_stage_decay, exp.model.num_stages)
    optimizer = make_optimizer(o, phase.lr, steps, model.trainable_variables, multipliers)
    loss, acc = make_loss(o, exp.data.soft_labels)
    model.compile(optimizer=optimizer, loss=loss, metrics=[acc], jit_compile=exp.jit_compile)
    return steps


def announce_phase(ctx: PhaseContext, data, cached) -> None:
    """A phase begins: its record in history (:func:`kerasxfer.run_files.phase_record`), its log line and its
    TensorBoard marker.  ``cached``: True (the head on cached features), ``"activations"`` (the trainable stages on
    cached activations) or False (the whole model)."""
    phase, first, last = ctx.phase, ctx.span.first, ctx.span.last
    trainable, total = count_params(ctx.model.trainable_weights), count_params(ctx.model.weights)
    ctx.history["phases"].append(
        run_files.phase_record(ctx.exp, phase, first, last, trainable, total, cached, ctx.steps, ctx.steps_per_epoch)
    )
    log.info(
        "phase %s: epochs %d-%d, lr %g, %s trainable of %s parameters",
        phase.name,
        first + 1,
        last,
        phase.lr,
        f"{trainable:,}",
        f"{total:,}",
    )
    tensorboard.write_phase_marker(
        os.path.join(ctx.out, rundir.TB),
        first,
        f"epoch {first + 1}: phase **{phase.name}** begins (lr {phase.lr:g}, trainable: "
        f"{phase.trainable}, {trainable:,} of {total:,} parameters)",
    )

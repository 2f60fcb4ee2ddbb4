"""A frozen phase solved, not trained (:mod:`kerasxfer.probe`), as one entry on the run's epoch axis.

:func:`solve_phase` computes the frozen backbone's pooled features once (shared with the study through
:mod:`kerasxfer.features`), solves the standardised L2 logistic regression, writes it into the model's head
(``head_norm`` and ``head_dense``: :func:`kerasxfer.models.head.set_linear_head`), and records one epoch
whose numbers are the head's own (Keras evaluates it on the training and validation features), through the
same callbacks as any epoch: history, best checkpoint, resume state, TensorBoard, a study's progress and forks.
"""

from __future__ import annotations

import logging

import keras

from kerasxfer import run_files
from kerasxfer.callbacks import StepLearningRate, phase_callbacks
from kerasxfer.data.batches import ordered_batches
from kerasxfer.errors import UserError
from kerasxfer.features import backbone_features, feature_key
from kerasxfer.models import apply_trainable
from kerasxfer.models.head import set_linear_head
from kerasxfer.phase_setup import announce_phase, compile_for_phase
from kerasxfer.phases import PhaseContext, PhaseSpan
from kerasxfer.probe import solve

log = logging.getLogger("kerasxfer")


def solve_phase(run, span: PhaseSpan, tb, stop_on_signal) -> None:
    """A solved head-only phase of ``run`` (a :class:`kerasxfer.training._Run`): the frozen backbone's pooled
    features (once), the probe written into the head, and one entry on the epoch axis whose numbers are the head's
    own (Keras evaluates it on the training and validation features), recorded, checkpointed and logged like any
    epoch."""
    exp, model, data, (index, phase, first, _) = run.exp, run.model, run.data, span
    feats = _features(run, index, phase)
    with run.strategy.scope():
        steps = compile_for_phase(feats.head, exp, phase, data.steps_per_epoch, model)
    steps = {**steps, "total_steps": 0, "warmup_steps": 0}  # no optimizer step: the head is solved
    ctx = PhaseContext(exp, span, steps, run.history, run.timings, data.num_train, 0, model, run.out)
    announce_phase(ctx, data, True)
    callbacks = keras.callbacks.CallbackList(_callbacks(run, ctx, tb, stop_on_signal), model=feats.head)
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(first)
    probe = solve(
        feats.train_x, data.train_labels, feats.val_x, data.val_labels, data.num_classes, class_weight=exp.optim.class_weight
    )
    if probe is None:
        raise UserError(
            f"the {phase.name} phase cannot be solved: its training images hold fewer than two classes; add images of "
            "every class (or pass --frozen_head=epochs)."
        )
    set_linear_head(model, probe)
    bs = exp.data.batch_size
    train = feats.head.evaluate(ordered_batches(feats.train_x, data.train_labels, bs), verbose=0, return_dict=True)
    val = feats.head.evaluate(ordered_batches(feats.val_x, data.val_labels, bs), verbose=0, return_dict=True)
    run.history["phases"][-1]["probe"] = probe.record()
    _say(phase.name, probe)
    logs = {"loss": train["loss"], "accuracy": train["accuracy"], "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
    callbacks.on_epoch_end(first, logs)
    callbacks.on_train_end()


def _features(run, index: int, phase):
    """The phase's model set up (backbone frozen, a resumed state restored) and the pooled features, once."""
    exp, model = run.exp, run.model
    with run.strategy.scope():
        apply_trainable(model, phase.trainable, exp.model.num_stages, exp.model.is_transfer, exp.optim.bn)
    if run.resume is not None:
        run.resume.restore(model)
        run.resume = None
    if run.features is None:
        key = feature_key(exp, index, run.bn_calibrated)
        run.features = backbone_features(model, run.data, exp.data.batch_size, key, "the head is solved on them")
        run_files.charge(run.timings, "feature_seconds", run.features.seconds)
    if exp.model.is_transfer and not exp.features_valid():
        log.info("the head is solved on the images as they are: augmentation and MixUp/CutMix act in the later phases")
    return run.features


def _callbacks(run, ctx: PhaseContext, tb, stop_on_signal) -> list:
    """The phase's callbacks (:func:`kerasxfer.callbacks.phase_callbacks`) but the per-step learning rate: no step."""
    state = run.state.callback(run.history, run.timings, model=run.model)
    every = phase_callbacks(ctx, tensorboard=tb, stop_on_signal=stop_on_signal, state_callback=state, extra=run.callbacks)
    return [c for c in every if not isinstance(c, StepLearningRate)]


def _say(name: str, probe) -> None:
    log.info(
        "phase %s solved in %.1fs: L2 logistic regression on standardised features, C = %g chosen on validation "
        "(of %s): train accuracy %.4f, val accuracy %.4f%s",
        name,
        probe.seconds,
        probe.C,
        ", ".join(f"{c:g}" for c, _, _ in probe.grid),
        probe.train_accuracy,
        probe.val_accuracy,
        "" if probe.converged else " (L-BFGS stopped at its iteration limit)",
    )

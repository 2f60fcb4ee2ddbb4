"""The phase loop: train every phase of an :class:`~kerasxfer.config.Experiment`, leave a run directory.

:func:`run_experiment` opens the data and the weights before anything is
written, writes the run directory (:mod:`kerasxfer.rundir` lists its files),
trains the phases (scratch: one; finetune: frozen then unfrozen) on one
continuous epoch axis with the callbacks of :mod:`kerasxfer.callbacks`, and
evaluates the best checkpoint of the whole run (:mod:`kerasxfer.evaluation`).
What it writes into the run directory, and the history's schema, are
:mod:`kerasxfer.run_files`'; each phase's collaborators (its callbacks, its
history record) take one :class:`~kerasxfer.phases.PhaseContext`.

A run continues after any interruption from its last finished epoch
(:mod:`kerasxfer.resume`); a finished run is left as it is unless
``overwrite``; a run directory made with other settings is refused, naming
the fields.  Frozen-backbone phases train the head on backbone features
computed once, and phases that train the last stages train them on the
activations where they begin, also computed once (:mod:`kerasxfer.features`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from kerasxfer import fsio, run_files, rundir
from kerasxfer.callbacks import phase_callbacks
from kerasxfer.config import Experiment
from kerasxfer.data import load_data
from kerasxfer.data.sizes import resolve as resolve_image_size
from kerasxfer.distribute import defer_keras_build, describe, is_chief, make_strategy
from kerasxfer.errors import UserError
from kerasxfer.evaluation import count_params, evaluate_best, load_model, write_evaluation
from kerasxfer.families import family_of
from kerasxfer.features import backbone_features, boundary_activations, feature_key
from kerasxfer.models import apply_trainable, build_model, calibrate_batchnorm, use_native_grouped_conv
from kerasxfer.optim_config import class_weights
from kerasxfer.phase_setup import announce_phase, compile_for_phase
from kerasxfer.phases import PhaseContext, PhaseSpan, activations_off, next_phase, phase_spans
from kerasxfer.resume import ResumeState, saved_epoch, write_best
from kerasxfer.solved import solve_phase
from kerasxfer.stopping import StopOnSignal

log = logging.getLogger("kerasxfer")


def run_experiment(
    exp: Experiment,
    data=None,
    verbose: int = 0,
    overwrite: bool = False,
    callbacks=(),
    min_steps: int = 0,
    other_data: str = "refuse",
) -> dict:
    """Train every phase of ``exp`` and write its run directory; return metrics.json's content.

    ``data`` may be passed in to reuse pipelines already built (tests,
    sweeps, studies); otherwise it is loaded from ``exp.data``.  An
    interrupted run in ``exp.out_dir`` is continued from its last finished
    epoch; a finished one is returned as it is, unless ``overwrite``.
    ``callbacks`` run after the run's own at every epoch (a study's progress).
    ``min_steps``: raise the phases' epochs so each takes at least that many
    optimizer steps on the training split (:meth:`Experiment.with_min_steps`).
    A run in ``exp.out_dir`` made on other images (data.json's fingerprints: other files or labels, or the same
    names with other bytes) is never reused: ``other_data="refuse"`` raises one sentence naming --overwrite,
    ``"retrain"`` (a study's own runs) says what changed and trains it again.
    """
    exp.validate()
    strategy = make_strategy(exp.strategy)  # before any other TensorFlow op (multi_worker needs that)
    exp = resolve_image_size(exp)  # --image_size=auto: from the data's image sizes and the backbone
    if min_steps:
        data = data if data is not None else load_data(exp.data, exp.seed, determinism(exp))
        exp = raise_to_min_steps(exp, data.num_train, min_steps, "--min_steps (give the epochs to keep them): ")
    if not is_chief(strategy):  # only the chief writes the run directory; other workers write a scratch copy
        out = tempfile.mkdtemp(prefix="kerasxfer-worker-")
        log.info("not the chief worker: writing to %s (removed at the end)", out)
        try:
            return _train(exp, strategy, out, "new", data, verbose, callbacks)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    if not overwrite and rundir.is_run(exp.out_dir) and os.path.isfile(os.path.join(exp.out_dir, rundir.DATA)):
        data = data if data is not None else load_data(exp.data, exp.seed, determinism(exp))
        changes = run_files.data_changes(exp.out_dir, data.splits, exp)
        if changes and other_data != "retrain":
            raise run_files.stale_error(exp.out_dir, changes)
        if changes:
            log.warning("%s was trained on other images (%s): training it again on these", exp.out_dir, "; ".join(changes))
            overwrite = True
    if not overwrite and rundir.is_finished(exp.out_dir):  # read only: a finished run on read-only storage is fine
        metrics = run_files.finished_metrics(exp)
        if metrics is not None:
            return metrics
    with rundir.locked(exp.out_dir):
        status = rundir.inspect_run_dir(exp.out_dir, exp.to_dict(), overwrite, Experiment.complete)
        if status == "finished":
            metrics = run_files.finished_metrics(exp)
            if metrics is not None:
                return metrics
            status = "finishing"
        return _train(exp, strategy, exp.out_dir, status, data, verbose, callbacks)


def _train(exp: Experiment, strategy, out: str, status: str, data, verbose: int, callbacks) -> dict:
    if status == "finishing":
        log.info("%s was trained but not every output after %s was written: writing them now", out, rundir.METRICS)
        return _finish(_Run.finished(exp, strategy, out, data))
    run = _Run.opened(exp, strategy, out, data, resume=status == "resume", verbose=verbose, callbacks=callbacks)
    run.train()
    return _finish(run)


def finish_trained(exp: Experiment, data) -> dict:
    """Evaluate the run in ``exp.out_dir`` whose training is written (history, timings, best checkpoint) and write
    what follows: metrics.json, the pictures, the finished marker (:mod:`kerasxfer.forks`)."""
    return _finish(_Run.finished(exp, make_strategy(exp.strategy), exp.out_dir, data))


def determinism(exp: Experiment) -> bool:
    """Whether the run asks TensorFlow for deterministic ops (default: on CPU yes, on GPU no)."""
    if exp.deterministic is not None:
        return bool(exp.deterministic)
    return not tf.config.list_physical_devices("GPU")


@dataclasses.dataclass
class _Run:
    """One training run in ``out``: every piece of its state, built by :meth:`opened` or :meth:`finished`."""

    exp: Experiment
    strategy: object
    out: str
    data: object  # kerasxfer.data.DataSplits
    deterministic: bool
    state: ResumeState  # saves every epoch; clears at the end
    history: dict
    timings: dict
    done: int = 0  # epochs finished
    model: keras.Model | None = None  # None when only the outputs after training are left to write
    resume: ResumeState | None = None  # restored into the model at the first phase that trains, then None
    bn_calibrated: bool = False
    verbose: int = 0
    callbacks: tuple = ()  # after the run's own, every epoch (a study's progress)
    features: object = None  # backbone features of every image, computed at the first head-only phase

    # ------------------------------------------------------------- build
    @classmethod
    def opened(cls, exp: Experiment, strategy, out: str, data, resume: bool, verbose: int = 0, callbacks=()):
        """Data, weights and model first (a bad folder or an impossible download writes nothing), then the run files."""
        m = exp.model
        if m.is_transfer and m.weights == "imagenet":
            log.info("ImageNet weights: %s", family_of(m.backbone).load().imagenet_weights_file(m.backbone, False))
        # Every run sets its own dtype policy (a float32 run after a mixed one must not inherit it).
        keras.mixed_precision.set_global_policy(exp.precision)
        keras.utils.set_random_seed(exp.seed)  # before pipelines (their shuffles use it) and model weights
        deterministic = determinism(exp)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        data = data if data is not None else load_data(exp.data, exp.seed, deterministic)
        with strategy.scope():
            model = build_model(exp, data.num_classes)
        state = ResumeState(out)  # found (to continue from) or not; saves every epoch either way
        found = state if resume and state.found else None
        if found is None and os.path.isdir(out):
            rundir.remove_run_outputs(out)  # overwrite, or a run that died before its first epoch ended
        run_files.write_run_files(out, exp, data, describe(strategy))
        n_native = use_native_grouped_conv(model)
        if n_native:
            log.info("%d grouped convolutions run on TensorFlow's own kernels", n_native)
        bn_calibrated = m.is_transfer and (m.calibrate_bn == "always" or (m.calibrate_bn == "auto" and m.weights is None))
        if bn_calibrated and found is None:
            log.info(
                "random backbone: BatchNorm statistics re-estimated on %d training batches",
                calibrate_batchnorm(model, data.train),
            )
        if found is not None:
            history, timings, done = found.history, found.timings, found.epoch
            history.pop("stopped", None)
            write_best(found, model, os.path.join(out, rundir.MODEL))  # a best epoch that was still in memory
            log.info("continuing %s after epoch %d of %d", out, done, exp.total_epochs)
        else:
            history = run_files.new_history(exp, model.name, bn_calibrated, deterministic)
            timings, done = run_files.new_timings(), 0
        return cls(
            exp,
            strategy,
            out,
            data,
            deterministic,
            state,
            history,
            timings,
            done,
            model,
            found,
            bn_calibrated,
            verbose,
            tuple(callbacks),
        )

    @classmethod
    def finished(cls, exp: Experiment, strategy, out: str, data):
        """What :func:`_finish` needs of a run whose training ended: its data, history and timings (no model)."""
        deterministic = determinism(exp)
        data = data if data is not None else load_data(exp.data, exp.seed, deterministic)
        return cls(exp, strategy, out, data, deterministic, ResumeState(out, probe=False), *run_files.trained_record(out))

    # ------------------------------------------------------------- train
    def train(self) -> None:
        """Every phase the plan has left (:mod:`kerasxfer.phases`); Ctrl-C/SIGTERM end in one sentence."""
        tb = keras.callbacks.TensorBoard(log_dir=os.path.join(self.out, rundir.TB), write_graph=False, update_freq="epoch")
        try:
            with StopOnSignal() as stop_on_signal:
                while (span := next_phase(self.exp.phases, self.history, self.done)) is not None:
                    stop_on_signal.check()
                    self._phase(span, tb, stop_on_signal)
                    self.done = phase_spans(self.exp.phases, self.history)[span.index].last  # early stopping: sooner
                stop_on_signal.check()
        except KeyboardInterrupt:
            epoch = saved_epoch(self.out)
            where = f"after epoch {epoch}" if epoch else "from the start (no epoch had finished)"
            raise UserError(
                f"training was interrupted; everything up to the last finished epoch is kept in {self.out}: "
                f"run the same command again to continue {where}.",
                exit_code=130,
            ) from None

    def _phase(self, span: PhaseSpan, tb, stop_on_signal) -> None:
        """Train epochs ``span.first+1 .. span.last`` (from ``self.done`` when it resumes inside the phase)."""
        if span.phase.solve:
            return solve_phase(self, span, tb, stop_on_signal)
        exp, model, data, (index, phase, first, last) = self.exp, self.model, self.data, span
        with self.strategy.scope():
            apply_trainable(model, phase.trainable, exp.model.num_stages, exp.model.is_transfer, exp.optim.bn)
            if self.resume is not None and (exp.uses_cached_features(phase) or exp.uses_cached_activations(phase)):
                self.resume.restore(model)  # the backbone's outputs must come from the restored weights
            inputs, cached = _phase_inputs(self, index, phase)
            fit_model, train_from, val_data = (
                (inputs.head, inputs.train_from, inputs.val) if inputs is not None else (model, data.train_from, data.val)
            )
            steps = compile_for_phase(fit_model, exp, phase, data.steps_per_epoch, model)  # after every trainable change
        if self.resume is not None:
            # the state after epoch `done`: with its optimizer slots when `done` is in this phase
            self.resume.restore(model, fit_model if self.done > first else None)
            self.resume = None
        ctx = PhaseContext(exp, span, steps, self.history, self.timings, data.num_train, data.steps_per_epoch, model, self.out)
        if self.done == first:
            announce_phase(ctx, data, cached)
        callbacks = phase_callbacks(
            ctx,
            tensorboard=tb,
            stop_on_signal=stop_on_signal,
            state_callback=self.state.callback(self.history, self.timings, model=model),
            extra=self.callbacks,
        )
        # Epoch e's batches depend only on the seed and e (see data.pipeline), so a
        # resumed run sees what an uninterrupted one would have seen.
        defer_keras_build(fit_model, self.strategy)
        with self.strategy.scope():
            fit_model.fit(
                train_from(self.done, last),
                steps_per_epoch=data.steps_per_epoch,
                validation_data=val_data,
                initial_epoch=self.done,
                epochs=last,
                callbacks=callbacks,
                verbose=self.verbose,
                shuffle=False,
                class_weight=class_weights(exp.optim.class_weight, data.train_labels, data.num_classes),
            )


def _finish(run: _Run) -> dict:
    """Evaluate the best checkpoint and write metrics.json, the pictures and HParams; drop the resume state."""
    history, out = run.history, run.out
    if history.get("stopped"):
        raise run_files.diverged_error(history, os.path.join(out, rundir.MODEL))
    best_model = load_model(os.path.join(out, rundir.MODEL))
    use_native_grouped_conv(best_model)
    metrics, probs = evaluate_best(best_model, run.data)
    metrics.update(
        best_epoch=history["best"]["epoch"], best_phase=history["best"]["phase"], total_params=count_params(best_model.weights)
    )
    try:
        write_evaluation(out, run.exp, run.data, probs, metrics, history, run.timings)
    except Exception as e:  # pictures and TensorBoard extras: a run that trained must still finish
        metrics["evaluation_pictures_error"] = f"{type(e).__name__}: {e}"[:500]
        log.warning(
            "the run's pictures could not be drawn (%s): %s is finished without them", metrics["evaluation_pictures_error"], out
        )
    fsio.write_json(os.path.join(out, rundir.METRICS), metrics)
    run.state.clear()
    rundir.write_marker(out, "finished")  # last: a kill before this line leaves a run the next call completes
    test = metrics["test"]
    log.info(
        "best checkpoint: epoch %d (%s), val_accuracy %.4f; %s; run directory: %s",
        metrics["best_epoch"],
        metrics["best_phase"],
        metrics["val"]["accuracy"],
        f"test accuracy {test['accuracy']:.4f} on {run.data.num_test} held-out images" if test else "no test split",
        out,
    )
    return metrics


def _phase_inputs(run: "_Run", index: int, phase):
    """``(what fit trains and on what, cached)``: the head on pooled features (True), the unfrozen stages on
    the activations where they begin ("activations"), both computed once (:mod:`kerasxfer.features`), or
    ``(None, False)``: the whole model on the images."""
    exp, key = run.exp, feature_key(run.exp, index, run.bn_calibrated)
    if exp.uses_cached_features(phase):
        if run.features is None:
            run.features = backbone_features(run.model, run.data, exp.data.batch_size, key)
            run_files.charge(run.timings, "feature_seconds", run.features.seconds)
        return run.features, True
    if not exp.uses_cached_activations(phase):
        if exp.model.is_transfer and phase.trainable.startswith("stages:"):
            log.info(
                "the whole model trains in the %s phase (%s), not only its trainable stages on cached activations",
                phase.name,
                activations_off(exp, phase),
            )
        return None, False
    cut = boundary_activations(run.model, run.data, exp.data.batch_size, key)
    if cut is not None:
        run_files.charge(run.timings, "activation_seconds", cut.seconds)
    return cut, "activations" if cut is not None else False


def raise_to_min_steps(exp: Experiment, num_train: int, min_steps: int, label: str) -> Experiment:
    """:meth:`Experiment.with_min_steps`, saying in the log which phases it raised (``label`` first)."""
    raised = exp.with_min_steps(num_train, min_steps)
    changed = [f"{a.name} {a.epochs} -> {b.epochs}" for a, b in zip(exp.phases, raised.phases) if a.epochs != b.epochs]
    if changed:
        log.info(
            "%sepochs raised so every phase takes at least %d optimizer steps on %d training images (%s)",
            label,
            min_steps,
            num_train,
            ", ".join(changed),
        )
    return raised

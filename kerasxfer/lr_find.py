"""The learning-rate range test (Smith 2015; fastai's ``lr_find``): which rate should a phase train at?

:func:`lr_range_test` trains a compiled model for up to ``steps`` batches
while the rate grows exponentially from ``min_lr`` to ``max_lr``, records the
loss of every step, stops once the smoothed loss exceeds ``stop_factor``
times its minimum (or is not finite), and puts every variable of the model
and of its optimiser back bit for bit.  :func:`find_lr` does that for one
phase of an :class:`~kerasxfer.config.Experiment` (its data, model, trainable
rule, optimiser and per-stage rates) in a folder of its own, and draws the
curve with the suggestion; it never writes into a run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os

import numpy as np

from kerasxfer import figures, fsio, rundir
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

SMOOTHING = 0.98  # exponential smoothing of the loss, with bias correction (as fastai)


def suggest(lrs, smoothed) -> dict:
    """The rates the curve suggests.

    ``valley`` (the suggestion, fastai's default rule): the longest
    stretch over which the smoothed loss keeps falling (a longest decreasing
    subsequence), and the point half-way through its middle third — well
    inside the descent, before the minimum where training turns unstable.
    ``minimum_over_10``: a tenth of the rate at the lowest smoothed loss.
    """
    lrs, smoothed = np.asarray(lrs, float), np.asarray(smoothed, float)
    n = len(smoothed)
    run = [1] * n  # run[i]: the longest decreasing subsequence ending at step i
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
    end = int(np.argmax(run))
    start = end - run[end] + 1
    third = (end - start) / 3
    lowest = int(np.argmin(smoothed))
    return {
        "valley": float(lrs[start + int(third) + int(third / 2)]),
        "valley_steps": [start, end],
        "minimum_over_10": float(lrs[lowest] / 10),
        "lowest_loss_lr": float(lrs[lowest]),
    }


def lr_range_test(model, batches, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100, stop_factor: float = 4.0) -> dict:
    """Rates and losses of up to ``steps`` training steps of ``model`` (compiled, rate a variable) on ``batches``.

    The model's and the optimiser's variables are restored afterwards, whatever happens.
    """
    if not 0 < min_lr < max_lr:
        raise UserError(f"--min_lr={min_lr:g} and --max_lr={max_lr:g} must satisfy 0 < min_lr < max_lr.")
    if steps < 5:
        raise UserError(f"--steps={steps} is too few for a range test: use 50 or more, e.g. 100.")
    import keras

    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in [*model.variables, *opt.variables]]
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    try:
        for k, (x, y) in enumerate(batches.take(steps)):
            lr = min_lr * (max_lr / min_lr) ** (k / (steps - 1))
            opt.learning_rate.assign(lr)
            loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
            lrs.append(lr)
            losses.append(loss)
            if not math.isfinite(loss):
                break
            avg = SMOOTHING * avg + (1 - SMOOTHING) * loss
            smoothed.append(avg / (1 - SMOOTHING ** (k + 1)))
            best = min(best, smoothed[-1])
            if k >= max(5, steps // 10) and smoothed[-1] > stop_factor * best:
                break
    finally:
        for v, value in saved:
            v.assign(value)
    if len(smoothed) < 5:
        raise UserError(f"the range test diverged after {len(smoothed)} steps: lower --min_lr (now {min_lr:g}).")
    n = len(smoothed)
    return {
        "lrs": lrs[:n],
        "losses": losses[:n],
        "smoothed": smoothed,
        "steps": n,
        "stopped_early": n < steps,
        **suggest(lrs[:n], smoothed),
    }


def _train_earlier_phases(exp, index: int, data, stack) -> str:
    """Train ``exp``'s phases before ``index`` in a temporary folder (removed by ``stack``); their best model."""
    import tempfile

    from kerasxfer.training import run_experiment

    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="kerasxfer-lr-find-"))
    earlier = dataclasses.replace(exp, phases=exp.phases[:index], out_dir=os.path.join(tmp, "earlier"))
    log.info(
        "training the phase(s) before %s first (%s), in a temporary folder",
        exp.phases[index].name,
        ", ".join(p.name for p in earlier.phases),
    )
    run_experiment(earlier, data=data)
    return os.path.join(earlier.out_dir, rundir.MODEL)


def find_lr(
    exp,
    phase_name: str | None,
    out_dir: str,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    start_from: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Run the range test for the phase ``phase_name`` (default the first that is not solved) of ``exp``; write
    ``out_dir``.

    A later phase starts where it would in the run: the earlier phases are
    trained first, in a temporary folder, and the test starts from their
    best checkpoint.  ``start_from``: a ``model.keras`` to start from
    instead (read, never written).
    """
    exp.validate()
    names = [p.name for p in exp.phases]
    default = next((p.name for p in exp.phases if not p.solve), names[0])  # a solved phase has no learning rate
    phase = next((p for p in exp.phases if p.name == (phase_name or default)), None)
    if phase is None:
        raise UserError(f"--phase={phase_name!r} is not a phase of this run: use one of {', '.join(names)}.")
    if phase.solve:
        raise UserError(
            f"the {phase.name} phase is solved (--frozen_head=solve), so it has no learning rate: pass --phase="
            f"{next((n for n in names if n != phase.name), 'unfrozen')} for the phase after it, or --frozen_head=epochs."
        )
    if start_from is not None and not os.path.isfile(start_from):
        raise UserError(f"{start_from!r} does not exist: pass the path of a saved .keras model, or leave it out.")
    rundir.claim_output_folder(out_dir, ("lr_find.json", "lr_find.png"), "lr-find", overwrite)  # before any work
    with contextlib.ExitStack() as stack:
        return _find(exp, phase, names, out_dir, min_lr, max_lr, steps, start_from, stack)


def _find(exp, phase, names, out_dir, min_lr, max_lr, steps, start_from, stack) -> dict:
    import keras

    from kerasxfer.data import load_data
    from kerasxfer.evaluation import load_model
    from kerasxfer.models import apply_trainable, build_model, use_native_grouped_conv
    from kerasxfer.phase_setup import compile_for_phase

    keras.utils.set_random_seed(exp.seed)
    data = load_data(exp.data, exp.seed)
    index = names.index(phase.name)
    started_from = start_from
    if start_from is None and sum(p.epochs for p in exp.phases[:index]):
        start_from = _train_earlier_phases(exp, index, data, stack)
        started_from = "the best checkpoint of " + ", ".join(p.name for p in exp.phases[:index])
    keras.utils.set_random_seed(exp.seed)
    model = build_model(exp, data.num_classes)
    if start_from is not None:
        model.set_weights(load_model(start_from).get_weights())
        log.info("starting from %s", started_from)
    use_native_grouped_conv(model)
    apply_trainable(model, phase.trainable, exp.model.num_stages, exp.model.is_transfer, exp.optim.bn)
    plain = dataclasses.replace(exp, optim=dataclasses.replace(exp.optim, schedule="constant", warmup_epochs=0.0, ema=None))
    compile_for_phase(model, plain, dataclasses.replace(phase, lr=min_lr), data.steps_per_epoch)
    epochs = math.ceil(steps / data.steps_per_epoch)
    log.info("range test of the %s phase: %d steps, learning rate %.0e to %.0e", phase.name, steps, min_lr, max_lr)
    result = lr_range_test(model, data.train_from(0, epochs), min_lr, max_lr, steps)
    result.update(
        run=exp.name,
        phase=phase.name,
        trainable=phase.trainable,
        configured_lr=phase.lr,
        optimizer=exp.optim.optimizer,
        started_from=started_from,
        min_lr=min_lr,
        max_lr=max_lr,
    )
    fsio.write_json(os.path.join(out_dir, "lr_find.json"), result)
    figures.lr_find_curve(
        result, f"{exp.model.display_name}, {phase.name} phase ({phase.trainable})", os.path.join(out_dir, "lr_find.png")
    )
    log.info(
        "suggested learning rate %.1e (valley; a tenth of the minimum's rate: %.1e); the phase is configured at %.1e; curve: %s",
        result["valley"],
        result["minimum_over_10"],
        phase.lr,
        os.path.join(out_dir, "lr_find.png"),
    )
    return result

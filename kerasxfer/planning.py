"""A study within a time limit (``--minutes``): a short calibration on this machine, then a plan that fits.

:func:`calibrate` times, on this machine and in this process, what a study's
runs spend their time on (about 20 s): a training step of the scratch CNN at
its image size, a training step of the transfer arm's unfrozen stages on the
activations where they begin (what the unfrozen phase runs), and an epoch of
the head on cached features (mostly Keras' own work per epoch).
:func:`estimate` prices a plan — folds, and the minimum steps of the scratch
and unfrozen phases — from those costs and the split sizes; :func:`fit_plan`
gives up, in this order, until the estimate fits: folds (5 -> 3 -> 2), then
the unfrozen phase's minimum steps, then the scratch arm's (never under
:data:`FLOOR_STEPS`).  Every step given up is one sentence in the log and
in the report.  No flags here: the study passes ``minutes``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

log = logging.getLogger("kerasxfer")

#: The frozen phase on cached features: at most this many epochs, ended once val_loss has not fallen for
#: FROZEN_PATIENCE epochs (an epoch of the head on cached features costs a fraction of a second).
FROZEN_CAP = 500
FROZEN_PATIENCE = 10
#: The unfrozen phase of the default study trains at least this many optimizer steps (measured: see the README).
FINETUNE_MIN_STEPS = 100
#: Seconds a run spends outside its epochs (building, loading weights, evaluating, writing), until measured.
RUN_OVERHEAD_S = 12.0
#: Epochs a frozen phase that trains until converged is priced at (see kerasxfer.progress.EXPECTED_CONVERGED).
FROZEN_EPOCHS = 120
#: Seconds a solved frozen phase takes (kerasxfer.probe: nine L-BFGS fits on a few hundred feature rows).
SOLVE_SECONDS = 5.0
#: A phase's minimum steps are never cut below this to meet a time limit.
FLOOR_STEPS = 60
#: Fold counts tried, most first, when the planned folds do not fit.
FOLD_STEPS = (5, 3, 2)


@dataclasses.dataclass
class Costs:
    """Seconds this machine takes for the pieces of a study (measured by :func:`calibrate`)."""

    scratch_step: float
    unfrozen_step: float
    frozen_epoch: float
    overhead: float = RUN_OVERHEAD_S


def _fit_seconds(model, x, y, steps: int, epochs: int = 1, validation=None) -> float:
    import keras
    import tensorflow as tf

    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0, validation_data=validation)
    return time.perf_counter() - t


def calibrate(scratch, transfer, num_classes: int, steps: int = 6) -> Costs:
    """Time the study's expensive pieces with its own models on random inputs (weights untouched)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kerasxfer.features import boundary, stages_model
    from kerasxfer.models import apply_trainable, build_model
    from kerasxfer.models.transfer import get_backbone

    t0 = time.perf_counter()
    bs = scratch.data.batch_size
    rng = np.random.default_rng(0)
    y = tf.constant(rng.integers(0, num_classes, bs), tf.int32)
    keras.backend.clear_session()
    model = build_model(scratch, num_classes)
    s = scratch.data.image_size
    x = tf.constant(rng.uniform(0, 255, (bs, s, s, 3)), tf.float32)
    scratch_step = _fit_seconds(model, x, y, steps) / steps
    keras.backend.clear_session()
    model = build_model(dataclasses.replace(transfer, model=dataclasses.replace(transfer.model, weights=None)), num_classes)
    unfrozen = next((p for p in transfer.phases if p.trainable != "head"), None)
    unfrozen_step = 0.0
    if unfrozen is not None:
        apply_trainable(model, unfrozen.trainable, transfer.model.num_stages, True, transfer.optim.bn)
        tensor, name = boundary(get_backbone(model))
        if tensor is not None and transfer.uses_cached_activations(unfrozen):
            fit_model = stages_model(model, tensor, name)
            xa = tf.constant(rng.uniform(0, 1, (bs, *tensor.shape[1:])), tf.float32)
        else:
            fit_model, xa = model, tf.constant(rng.uniform(0, 255, (bs, *model.input_shape[1:])), tf.float32)
        unfrozen_step = _fit_seconds(fit_model, xa, y, steps) / steps
    feats = tf.constant(rng.uniform(0, 1, (bs, 1280)), tf.float32)
    head = keras.Sequential([keras.Input((1280,)), keras.layers.Dense(num_classes, activation="softmax")])
    val = tf.data.Dataset.from_tensors((feats, y))
    frozen_epoch = _fit_seconds(head, feats, y, 5, epochs=10, validation=val) / 10
    keras.backend.clear_session()
    costs = Costs(scratch_step, unfrozen_step, frozen_epoch)
    log.info(
        "[study] calibration (%.0f s): scratch step %.3f s, unfrozen step %.3f s, frozen epoch %.3f s",
        time.perf_counter() - t0,
        scratch_step,
        unfrozen_step,
        frozen_epoch,
    )
    return costs


def estimate(
    costs: Costs,
    folds: int,
    num_train: int,
    batch_size: int,
    scratch_epochs: int,
    finetune_epochs: int,
    min_steps: int,
    finetune_min_steps: int,
    controls: int,
    solved: bool = False,
) -> float:
    """Seconds a study of ``folds`` folds (every fold run) takes with these minimum steps (``solved``: the frozen
    phase is solved, :mod:`kerasxfer.probe`, not trained by epochs)."""
    per_epoch = max(1, math.ceil(num_train / batch_size))
    scratch = max(scratch_epochs, math.ceil(min_steps / per_epoch)) * per_epoch * costs.scratch_step
    frozen = SOLVE_SECONDS if solved else max(FROZEN_EPOCHS, math.ceil(min_steps / per_epoch)) * costs.frozen_epoch
    unfrozen = max(finetune_epochs, math.ceil(finetune_min_steps / per_epoch)) * per_epoch * costs.unfrozen_step
    runs = 2 + controls
    trained = 1 if controls == 2 else controls  # control-pretrained is forked from the transfer run (kerasxfer.forks)
    return folds * (scratch + frozen + unfrozen + trained * frozen + runs * costs.overhead)


def fit_plan(
    costs: Costs,
    minutes: float,
    folds: int,
    num_train_of,
    batch_size: int,
    scratch_epochs: int,
    finetune_epochs: int,
    min_steps: int,
    finetune_min_steps: int,
    controls: int,
    solved: bool = False,
) -> tuple:
    """``(folds, min_steps, finetune_min_steps, estimated seconds, sentences)`` that fit ``minutes``.

    ``num_train_of(folds)``: the training images of a run with that many folds.  Gives up folds first, then
    the unfrozen phase's minimum steps, then the scratch arm's, and says so; when even the smallest plan does
    not fit, it is kept and the sentence says how long it will take.
    """
    budget, said = 60.0 * minutes, []

    fixed = (batch_size, scratch_epochs, finetune_epochs)
    cost = lambda k, ms, fms: estimate(costs, k, num_train_of(k), *fixed, ms, fms, controls, solved)  # noqa: E731

    plan: tuple[int, ...] = (folds, min_steps, finetune_min_steps)
    if cost(*plan) <= budget:
        return (
            *plan,
            cost(*plan),
            [
                f"--minutes={minutes:g}: the whole plan fits (about {cost(*plan) / 60:.0f} min "
                "by the calibration); nothing was given up."
            ],
        )
    for k in [f for f in FOLD_STEPS if f < folds] if folds > 1 else []:
        plan = (k, *plan[1:])
        if cost(*plan) <= budget:
            break
    if plan[0] != folds:
        said.append(f"{plan[0]} folds instead of {folds} (fewer images tested per arm run, wider intervals)")
    for which in (2, 1):  # the unfrozen phase's minimum, then the scratch arm's
        while cost(*plan) > budget and plan[which] > FLOOR_STEPS:
            plan = tuple(max(FLOOR_STEPS, int(v * 0.8)) if i == which else v for i, v in enumerate(plan))
        original = (min_steps, finetune_min_steps)[which - 1]
        if plan[which] != original:
            what = "the unfrozen phase" if which == 2 else "every other phase (the scratch arm's included)"
            said.append(
                f"{what} trains at least {plan[which]} optimizer steps instead of {original} (a shorter "
                "phase may stop before it has learned what it could)"
            )
    seconds = cost(*plan)
    text = f"--minutes={minutes:g}: to fit, " + "; ".join(said) if said else f"--minutes={minutes:g}:"
    if seconds > budget:
        text += (
            f"; even so the study needs about {seconds / 60:.0f} min by the calibration (more than "
            f"{minutes:g}): give it more minutes, or fewer images"
        )
    else:
        text += f"; about {seconds / 60:.0f} min by the calibration"
    return (*plan, seconds, [text + ". Without --minutes nothing is given up."])


#: The study folder's record of its --minutes plan: a rerun of the same study continues under it.
PLAN_FILE = "plan.json"


def fit_minutes(cfg, sources, num_classes: int, overwrite: bool = False) -> None:
    """The study ``cfg`` within its ``minutes``: calibrate this machine, plan folds and minimum steps to fit, say
    what was given up (in the log, and in the report through ``cfg.planned``).

    The plan is kept in ``<study>/plan.json`` with what it was made for (the limit, the arms, the data's size):
    the same study run again (after a kill) continues under it instead of calibrating anew on a machine whose
    load has changed (which planned other steps and refused the runs already made); ``overwrite`` plans again.
    """
    import os

    from kerasxfer import fsio

    unfrozen = [p for p in cfg.transfer.phases if p.trainable != "head"]

    def num_train_of(k):
        return sources.num_train(dataclasses.replace(cfg.scratch.data, folds=k if k > 1 else 0, fold=1 if k > 1 else 0))

    asked = (
        cfg.folds or 1,
        num_train_of,
        cfg.scratch.data.batch_size,
        cfg.scratch.phases[0].epochs,
        unfrozen[0].epochs if unfrozen else 0,
        cfg.min_steps,
        min(cfg.finetune_min_steps, cfg.min_steps),
        len(cfg.controls()),
        any(p.solve for p in cfg.transfer.phases),
    )
    request = _request(cfg, asked)
    path = os.path.join(cfg.out_dir, PLAN_FILE)
    kept = None if overwrite else _kept_plan(path, request)
    if kept is not None:
        folds, min_steps, ft, said = kept
        log.info("[study] --minutes=%g: continuing under the plan this study was started with (%s)", cfg.minutes, path)
    else:
        costs = calibrate(cfg.scratch, cfg.transfer, num_classes)
        folds, min_steps, ft, seconds, said = fit_plan(costs, cfg.minutes, *asked)
        os.makedirs(cfg.out_dir, exist_ok=True)
        plan = {"folds": folds, "min_steps": min_steps, "finetune_min_steps": ft, "said": list(said)}
        fsio.write_json(path, {"request": request, "plan": plan, "seconds": seconds, "costs": dataclasses.asdict(costs)})
    cfg.folds, cfg.min_steps, cfg.finetune_min_steps = folds, min_steps, ft
    cfg.planned = tuple(said)
    for line in said:
        log.info("[study] %s", line)


def _request(cfg, asked) -> dict:
    """What a plan was made for, other than the machine: the limit, the planner's inputs, the arms' settings."""
    import hashlib
    import json

    folds, num_train_of, *rest = asked
    arms = json.dumps([cfg.scratch.to_dict(), cfg.transfer.to_dict()], sort_keys=True, default=str)
    return {
        "minutes": cfg.minutes,
        "folds": folds,
        "num_train": num_train_of(folds),
        "planner": list(rest),
        "arms": hashlib.sha256(arms.encode()).hexdigest(),
    }


def _kept_plan(path: str, request: dict):
    """``(folds, min_steps, finetune_min_steps, said)`` of the plan in ``path`` when it was made for ``request``;
    None when there is none, it is damaged (said in one line), or it was made for something else."""
    import os

    from kerasxfer import fsio

    if not os.path.isfile(path):
        return None
    try:
        record = fsio.read_json(path)
        if record["request"] != request:
            log.info("[study] %s was planned for other settings or data: planning again", path)
            return None
        plan = record["plan"]
        return int(plan["folds"]), int(plan["min_steps"]), int(plan["finetune_min_steps"]), tuple(plan["said"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("[study] %s is damaged (%s): planning again", path, type(e).__name__)
        return None


#: How the report states a solved frozen phase (the method, also under --exhaustive: not a shortcut).
SOLVED = (
    "The frozen phase was solved, not trained: L2 logistic regression on the standardised pooled features, its "
    "strength chosen on the validation images, and the unfrozen phase started from that head "
    "(--frozen_head=epochs trains it by epochs)."
)


def shortcuts(cfg, folds_run=None) -> list:
    """The sentences that say what the study ``cfg`` did to be cheap (or that it did none of it)."""
    if cfg.exhaustive:
        return [
            "Exhaustive (--exhaustive): every fold ran, the control trained the whole transfer schedule, "
            "nothing was reused between epochs or runs, and every phase trained at least "
            f"{cfg.min_steps} optimizer steps."
        ] + ([SOLVED] if any(p.solve for p in cfg.transfer.phases) else [])
    out = [
        "Computed once: the frozen backbone's pooled features and the activations where the unfrozen stages "
        "begin, once per image for the whole study (every fold, seed and phase share them; the same "
        "training to the last bit, tested), wherever that is exact (no augmentation or mixing, float32, "
        "frozen BatchNorm; each run's log says when not)."
    ]
    frozen = (
        "The frozen phase trained the --frozen_epochs given"
        if cfg.frozen_given
        else f"The frozen phase trained the head until its val_loss stopped falling ({FROZEN_PATIENCE} epochs "
        f"without a lower one, at most {FROZEN_CAP} epochs, never under --min_steps={cfg.min_steps})"
    )
    if any(p.solve for p in cfg.transfer.phases):
        frozen = SOLVED[:-1]
    if cfg.min_steps and cfg.finetune_min_steps < cfg.min_steps:
        frozen += (
            f"; the unfrozen phase, starting from that head, trained at least {cfg.finetune_min_steps} "
            f"optimizer steps instead of {cfg.min_steps}"
        )
    out.append(frozen + ".")
    if len(cfg.controls()) == 2:
        out.append(
            'The control answered "did the pretrained weights help?" on the frozen phase: the head on '
            "the random backbone's features against the same head on the pretrained backbone's "
            "(control-pretrained, written from the transfer run's own frozen phase: the same training, "
            "tested, not run twice), instead of a second full fine-tune."
        )
    if cfg.sequential:
        from kerasxfer.reporting.sequential import rule_sentence

        ran = folds_run or cfg.folds
        out.append(
            f"Folds ran one at a time under {rule_sentence(cfg.folds)}: "
            + (
                f"it stopped after {ran} of {cfg.folds} folds."
                if ran < cfg.folds
                else f"no look before the last crossed it, so all {cfg.folds} folds ran."
            )
        )
    out += list(cfg.planned)
    out.append("--exhaustive runs the same study with none of these shortcuts (every fold, the full control, no reuse).")
    return out

"""Training recipes (issue 16): schedules, per-stage rates, BatchNorm mode, EMA, early stopping, lr finder."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.errors import UserError
from kerasxfer.models import apply_trainable, build_model
from kerasxfer.models.transfer import get_backbone
from kerasxfer.optim_config import OptimConfig, learning_rate, schedule_steps
from kerasxfer.optimizers import PhaseSchedule, make_optimizer, stage_multipliers
from kerasxfer.phase_setup import compile_for_phase
from kerasxfer.stopping import EarlyStopPhase
from kerasxfer.training import run_experiment

PEAK = 0.1


@pytest.mark.parametrize(
    "kind, total, warmup, step, expected",
    [
        ("constant", 100, 0, 0, PEAK),
        ("constant", 100, 0, 99, PEAK),
        ("constant", 100, 10, 0, PEAK / 10),  # warm-up starts at peak / warmup_steps
        ("constant", 100, 10, 9, PEAK),  # and ends at the peak
        ("constant", 100, 10, 50, PEAK),
        ("cosine", 100, 0, 0, PEAK),
        ("cosine", 100, 0, 50, PEAK / 2),  # half-way down
        ("cosine", 100, 0, 100, 0.0),
        ("cosine", 110, 10, 60, PEAK / 2),  # half-way through what follows the warm-up
        ("cosine", 110, 10, 4, PEAK * 5 / 10),
        ("onecycle", 100, 25, 0, PEAK / 25),  # starts at peak / 25
        ("onecycle", 100, 25, 25, PEAK),  # the peak at the end of the rise
        ("onecycle", 100, 25, 100, PEAK / 1e5),  # ends at peak / 1e5
        ("onecycle", 100, 25, 12.5, PEAK / 25 + (PEAK - PEAK / 25) / 2),
    ],
)
def test_schedule_values(kind, total, warmup, step, expected):
    got_np = float(learning_rate(np, np.asarray(step, np.float32), PEAK, kind, total, warmup))
    got_keras = float(keras.ops.convert_to_numpy(PhaseSchedule(PEAK, kind, total, warmup)(step)))
    assert got_np == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert got_keras == pytest.approx(expected, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(
    "schedule, warmup_epochs, expected",
    [
        ("constant", 0, 0),
        ("cosine", 1, 34),
        ("cosine", 0.5, 17),
        ("onecycle", 0, 85),
        ("onecycle", 2, 68),
    ],
)
def test_schedule_steps(schedule, warmup_epochs, expected):
    steps = schedule_steps(OptimConfig(schedule=schedule, warmup_epochs=warmup_epochs), 10, 34)
    assert steps == {"kind": schedule, "total_steps": 340, "warmup_steps": expected}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("schedule", "step", "--schedule='step' is unknown: use constant, cosine, onecycle."),
        ("bn", "on", "--bn='on' is unknown: use frozen, train."),
        ("lr_stage_decay", 1.5, "--lr_stage_decay=1.5 must be in [0, 1]"),
        ("label_smoothing", 1.0, "--label_smoothing=1.0 must be in [0, 1)"),
        ("grad_clip", -1.0, "--grad_clip=-1.0 must be 0 (off)"),
        ("ema", 1.0, "--ema=1.0 must be a momentum in [0, 1)"),
        ("early_stopping", -2, "--early_stopping=-2 must be 0 (off)"),
        ("warmup_epochs", -1.0, "--warmup_epochs=-1.0 must be 0 or a positive number"),
        ("weight_decay", 1e-4, "pass --optimizer=adamw (or sgd)"),
    ],
)
def test_bad_recipe_values_are_one_sentence(field, value, message):
    with pytest.raises(UserError) as e:
        OptimConfig(**{field: value}).validate()
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).endswith(".")


def test_warmup_longer_than_a_phase_is_refused():
    exp = _scratch("/tmp/unused", epochs=2, optim=OptimConfig(schedule="cosine", warmup_epochs=2))
    with pytest.raises(UserError, match="leaves no epoch of the scratch phase"):
        exp.validate()


# ------------------------------------------------------------ per-stage rates, BatchNorm mode
def _transfer_model(backbone="regnetx002"):
    keras.utils.set_random_seed(0)
    exp = Experiment(
        name="t",
        out_dir="/tmp/unused",
        data=DataConfig(image_size=32),
        model=ModelConfig(kind="transfer", backbone=backbone, weights=None),
    )
    return build_model(exp, 3), exp


@pytest.mark.parametrize("decay", [0.5, 0.0])
def test_one_sgd_step_moves_stage_i_by_decay_to_the_i(decay):
    model, _ = _transfer_model()
    apply_trainable(model, "all", 4, transfer=True)
    variables = model.trainable_variables
    mult = stage_multipliers(model, variables, decay, 4)
    opt = make_optimizer(OptimConfig(optimizer="sgd", lr_stage_decay=decay), 0.01, None, variables, mult)
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    opt.apply([keras.ops.ones_like(v) for v in variables], variables)
    moved = [before[k] - keras.ops.convert_to_numpy(v) for k, v in enumerate(variables)]
    head = [k for k, v in enumerate(variables) if v.path.startswith("head_dense")]
    unit = float(moved[head[0]].flat[0])
    assert unit > 0
    depths = {}  # stage of each variable from the backbone's layer names: i = 4 - stage, the stem 5
    stage_of = __import__("kerasxfer.models.regnet", fromlist=["stage_of"]).stage_of
    for layer in get_backbone(model).layers:
        for w in layer.trainable_weights:
            s = stage_of(layer.name)
            depths[id(w)] = 5 if s is None else 4 - s
    assert sorted(set(depths.values())) == [1, 2, 3, 4, 5]
    for k, v in enumerate(variables):
        i = depths.get(id(v), 0)
        if decay == 0.0 and i > 0:
            assert np.array_equal(before[k], keras.ops.convert_to_numpy(v)), v.path  # bit-identical
        else:
            np.testing.assert_allclose(moved[k], unit * decay**i, rtol=0, atol=1e-6, err_msg=v.path)


def _bn_stats(model):
    return {
        f"{l.name}/{w.name}": keras.ops.convert_to_numpy(w).copy()
        for l in get_backbone(model).layers
        if isinstance(l, keras.layers.BatchNormalization)
        for w in (l.moving_mean, l.moving_variance)
    }


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
@pytest.mark.parametrize("bn", ["frozen", "train"])
def test_bn_mode_of_the_unfrozen_phase(bn):
    model, exp = _transfer_model()
    exp.optim = OptimConfig(bn=bn)
    apply_trainable(model, "stages:2", 4, transfer=True, bn=bn)
    compile_for_phase(model, exp, PhaseConfig("unfrozen", 1, 1e-3, "stages:2"), 2)
    before = _bn_stats(model)
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 16), batch_size=8, epochs=1, verbose=0)
    after = _bn_stats(model)
    same = [k for k in before if np.array_equal(before[k], after[k])]
    if bn == "frozen":
        assert len(same) == len(before) > 20  # every moving mean and variance bit-identical
    else:
        assert not same  # every one moved, the frozen stages' too (fastai's train_bn)


# ------------------------------------------------------------ early stopping (a table on fabricated history)
class _Model:
    stop_training = False


@pytest.mark.parametrize(
    "accs, patience, stops",
    [
        ([0.5, 0.6, 0.7], 1, False),
        ([0.5, 0.6, 0.6], 1, True),  # a tie is no improvement
        ([0.5, 0.4, 0.45], 2, True),
        ([0.5, 0.4, 0.55], 2, False),
        ([0.5, 0.4], 2, False),
    ],
)
def test_early_stopping_counts_epochs_without_a_better_val_accuracy(accs, patience, stops):
    history = {
        "phases": [{"name": "p", "first_epoch": 1, "last_epoch": 10}],
        "epochs": [{"phase": "p", "epoch": i + 1, "val_accuracy": a} for i, a in enumerate(accs)],
    }
    cb = EarlyStopPhase(history, "p", patience)
    cb.set_model(_Model())
    cb.on_epoch_end(len(accs) - 1)
    assert cb.model.stop_training == stops
    assert history["phases"][0].get("early_stopped", False) == stops
    if stops:
        assert history["phases"][0]["last_epoch"] == len(accs) and history["phases"][0]["planned_last_epoch"] == 10


# ------------------------------------------------------------ whole (tiny) runs
def _scratch(out, epochs=2, optim=None, seed=0):
    return Experiment(
        name="scratch",
        out_dir=str(out),
        seed=seed,
        data=DataConfig(dataset="digits", image_size=16, batch_size=64),
        model=ModelConfig(kind="scratch", widths=[8, 16], dropout=0.3),
        phases=[PhaseConfig("scratch", epochs, 3e-3, "all")],
        optim=optim or OptimConfig(),
    )


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_ema_zero_evaluates_like_no_ema(tmp_path):
    a = run_experiment(_scratch(tmp_path / "plain"))
    keras.backend.clear_session()
    b = run_experiment(_scratch(tmp_path / "ema0", optim=OptimConfig(ema=0.0)))
    keras.backend.clear_session()
    c = run_experiment(_scratch(tmp_path / "ema9", optim=OptimConfig(ema=0.9)))
    assert a["test"]["accuracy"] == b["test"]["accuracy"] and a["test"]["loss"] == b["test"]["loss"]
    assert a["val"]["loss"] == b["val"]["loss"]
    assert c["val"]["loss"] != a["val"]["loss"]  # the average is what is evaluated, so the equality is not vacuous


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_recipe_is_recorded_reported_and_the_saved_model_loads_with_plain_keras(tmp_path):
    optim = OptimConfig(schedule="cosine", warmup_epochs=1, label_smoothing=0.1, grad_clip=1.0)
    run_experiment(_scratch(tmp_path / "run", epochs=3, optim=optim))
    h = json.load(open(tmp_path / "run" / "history.json"))
    assert h["phases"][0]["schedule"]["warmup_steps"] == h["phases"][0]["schedule"]["steps_per_epoch"]
    lrs = [e["learning_rate"] for e in h["epochs"]]
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] < 1e-6  # after warm-up: the peak; at the end: ~0
    assert json.load(open(tmp_path / "run" / "config.json"))["optim"]["label_smoothing"] == 0.1
    code = "import keras, sys; m = keras.saving.load_model(sys.argv[1]); print(m.name)"
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run" / "model.keras")], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    from kerasxfer.reporting.compare_report import write_report

    run_experiment(_scratch(tmp_path / "other"))
    write_report([str(tmp_path / "run"), str(tmp_path / "other")], str(tmp_path / "rep"))
    md = open(tmp_path / "rep" / "report.md").read()
    assert "cosine schedule, 1 warm-up epoch(s), label smoothing 0.1" in md
    assert "| cosine, 17 warm-up steps |" in md and os.path.getsize(tmp_path / "rep" / "lr.png") > 5000


class _Interrupt(keras.callbacks.Callback):
    """Stops the process's run after epoch ``at`` (the resume state of that epoch is written: this runs last)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def _finetune(out):
    return Experiment(
        name="finetune",
        out_dir=str(out),
        data=DataConfig(dataset="digits", image_size=32, batch_size=64, train_fraction=0.3),
        model=ModelConfig(kind="transfer", backbone="regnetx002", weights=None),
        # 1e-30: the head does not move (float32), so epoch 2 cannot beat epoch 1 and early stopping ends phase 1
        phases=[PhaseConfig("frozen", 5, 1e-30, "head"), PhaseConfig("unfrozen", 2, 1e-3, "stages:1")],
        optim=OptimConfig(schedule="cosine", warmup_epochs=1, ema=0.5, early_stopping=1, lr_stage_decay=0.5),
    )


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_ema_schedule_and_early_stopping_resume_exactly(tmp_path):
    """Interrupted after the epoch early stopping ends phase 1 at, and inside phase 2: the same run as uninterrupted."""
    whole = run_experiment(_finetune(tmp_path / "whole"))
    h = json.load(open(tmp_path / "whole" / "history.json"))
    frozen, unfrozen = h["phases"]
    assert frozen["early_stopped"] and frozen["last_epoch"] == 2 and frozen["planned_last_epoch"] == 5
    assert unfrozen["first_epoch"] == 3 and [e["epoch"] for e in h["epochs"]] == [1, 2, 3, 4]
    for at in (2, 3):
        keras.backend.clear_session()
        with pytest.raises(UserError, match="interrupted"):
            run_experiment(_finetune(tmp_path / "cut"), callbacks=[_Interrupt(at)])
    keras.backend.clear_session()
    cut = run_experiment(_finetune(tmp_path / "cut"))
    assert _read(tmp_path / "cut" / "history.json") == _read(tmp_path / "whole" / "history.json")
    assert cut["test"] == whole["test"] and cut["val"] == whole["val"]


def test_recipe_flags_reach_the_config_and_make_passes_them():
    exp = dataclasses.replace(_scratch("/tmp/unused"), optim=OptimConfig(schedule="onecycle", ema=0.99))
    assert Experiment.from_dict(exp.to_dict()).optim == exp.optim
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for var, flag in (
        ("SCHEDULE", "schedule"),
        ("WARMUP_EPOCHS", "warmup_epochs"),
        ("LR_STAGE_DECAY", "lr_stage_decay"),
        ("OPTIMIZER", "optimizer"),
        ("WEIGHT_DECAY", "weight_decay"),
        ("LABEL_SMOOTHING", "label_smoothing"),
        ("GRAD_CLIP", "grad_clip"),
        ("BN", "bn"),
        ("EMA", "ema"),
        ("EARLY_STOPPING", "early_stopping"),
    ):
        for target in ("scratch", "finetune", "pretrain", "sweep", "study", "lr-find"):
            out = subprocess.run(
                ["make", "-n", "-s", target, f"{var}=7", "VENV=/nonexistent"], cwd=root, capture_output=True, text=True
            ).stdout
            assert f"--{flag}=7" in out, (target, var, out[-500:])

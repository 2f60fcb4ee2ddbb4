"""Whole runs: the run directory, two phases on one epoch axis, models that load without kerasxfer."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.rundir import RUN_FILES
from kerasxfer.training import run_experiment


def _finetune_exp(out_dir, dataset, epochs=(2, 2), image_size=32):
    return Experiment(
        name="finetune",
        out_dir=str(out_dir),
        data=DataConfig(dataset=dataset, image_size=image_size, batch_size=8),
        model=ModelConfig(kind="transfer", backbone="regnetx002"),
        phases=[
            PhaseConfig("frozen", epochs[0], 1e-3, "head"),
            PhaseConfig("unfrozen", epochs[1], 1e-4, "stages:2"),
        ],
        seed=0,
    )


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    from tests.conftest import _write_image

    root = tmp_path_factory.mktemp("data")
    for ci, c in enumerate(["red", "green", "blue"]):
        (root / c).mkdir()
        for i in range(8):
            color = [(220, 20, 20), (20, 220, 20), (20, 20, 220)][ci]
            _write_image(str(root / c / f"{i}.png"), 40, color)
    out = tmp_path_factory.mktemp("runs") / "finetune"
    metrics = run_experiment(_finetune_exp(out, str(root)))
    return out, metrics


def test_run_directory_is_complete(finetune_run):
    out, metrics = finetune_run
    for f in RUN_FILES:
        assert os.path.isfile(out / f), f
    assert os.path.isdir(out / "tb" / "train") and os.path.isdir(out / "tb" / "validation")
    cfg = json.loads((out / "config.json").read_text())
    assert Experiment.from_dict(cfg).to_dict() == cfg
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for split in ("val", "test"):
        m = metrics[split]
        assert sum(sum(r) for r in m["confusion_matrix"]) == m["num_images"] == len(m["labels"])
        assert set(m["per_class"]) == {"blue", "green", "red"}
    data = json.loads((out / "data.json").read_text())
    assert (data["num_val"], data["num_test"]) == (metrics["val"]["num_images"], metrics["test"]["num_images"])


def test_two_phases_on_one_continuous_epoch_axis(finetune_run):
    out, metrics = finetune_run
    h = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in h["epochs"]] == [1, 2, 3, 4]
    assert [e["phase"] for e in h["epochs"]] == ["frozen", "frozen", "unfrozen", "unfrozen"]
    assert [e["learning_rate"] for e in h["epochs"]] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    p1, p2 = h["phases"]
    assert (p1["first_epoch"], p1["last_epoch"], p2["first_epoch"], p2["last_epoch"]) == (1, 2, 3, 4)
    assert p1["trainable_params"] < p2["trainable_params"] < p2["total_params"]
    best = max(h["epochs"], key=lambda e: e["val_accuracy"])
    assert h["best"]["val_accuracy"] == best["val_accuracy"]
    assert metrics["best_epoch"] == h["best"]["epoch"]
    # the best checkpoint is what metrics.json evaluated
    assert metrics["val"]["accuracy"] == pytest.approx(h["best"]["val_accuracy"], abs=1e-6)


def test_tensorboard_has_every_epoch_of_both_phases(finetune_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = finetune_run
    acc = EventAccumulator(str(out / "tb" / "validation"))
    acc.Reload()
    tags = acc.Tags()["scalars"] + acc.Tags()["tensors"]
    tag = "epoch_accuracy"
    assert tag in tags
    events = acc.Tensors(tag) if tag in acc.Tags()["tensors"] else acc.Scalars(tag)
    assert sorted(e.step for e in events) == [0, 1, 2, 3]


def test_saved_model_loads_without_kerasxfer_and_predicts_the_same(finetune_run, tmp_path):
    from kerasxfer.evaluation import load_model

    out, _ = finetune_run
    x = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = load_model(str(out / "model.keras")).predict(x, verbose=0)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, keras
        m = keras.saving.load_model({str(out / "model.keras")!r}, safe_mode=True)
        np.save({str(tmp_path / "y.npy")!r}, m.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0))
        assert not any(k.startswith("kerasxfer") for k in sys.modules), "kerasxfer was imported"
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_scratch_run_learns_digits(tmp_path):
    exp = Experiment(
        name="scratch",
        out_dir=str(tmp_path / "scratch"),
        data=DataConfig(dataset="digits", image_size=16, batch_size=32),
        model=ModelConfig(kind="scratch", widths=[16, 32]),
        phases=[PhaseConfig("scratch", 3, 3e-3, "all")],
        seed=1,
    )
    metrics = run_experiment(exp)
    h = json.loads((tmp_path / "scratch" / "history.json").read_text())
    assert [e["epoch"] for e in h["epochs"]] == [1, 2, 3]
    assert metrics["test"]["accuracy"] > 0.8  # chance is 0.1


def test_a_run_whose_pictures_fail_is_finished_with_the_failure_recorded(tmp_path, monkeypatch):
    """A failure after training (a figure, TensorBoard) used to leave the run in state "training", and every
    rerun failed the same way: the run is finished, metrics.json says what failed, a rerun returns it."""
    import kerasxfer
    from kerasxfer import training

    def broken(*args, **kwargs):
        raise ValueError("a picture could not be drawn")

    monkeypatch.setattr(training, "write_evaluation", broken)
    tiny = dict(epochs=1, image_size=16, widths="8", batch_size=64)
    r = kerasxfer.scratch("digits", out_dir=str(tmp_path / "run"), **tiny)
    assert r.metrics["evaluation_pictures_error"] == "ValueError: a picture could not be drawn"
    assert json.loads((tmp_path / "run" / "kerasxfer-run.json").read_text())["state"] == "finished"
    again = kerasxfer.scratch("digits", out_dir=str(tmp_path / "run"), **tiny)
    assert again.metrics == r.metrics

"""The offline study: synthetic source task, pretraining export, comparison report, McNemar."""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig
from kerasxfer.data import load_data, synthetic
from kerasxfer.errors import UserError
from kerasxfer.evaluation import load_model
from kerasxfer.models import build_transfer_model, get_backbone
from kerasxfer.provenance import export_backbone, weights_source
from kerasxfer.reporting.compare_report import write_report
from kerasxfer.training import run_experiment


def _images(seed, n=48, size=24, split=0):
    """(image, label) pairs as the synthetic source makes them (one image per index, in a tf.data map)."""
    ds = tf.data.Dataset.range(n).map(lambda i: synthetic.make_image(i, seed, split, size))
    return list(ds.as_numpy_iterator())


def test_synthetic_is_deterministic_per_seed_and_balanced():
    a, b, c = _images(3), _images(3), _images(4)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        assert ya == yb
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    labels = [y for _, y in a]
    assert np.bincount(labels, minlength=synthetic.NUM_CLASSES).tolist() == [2] * synthetic.NUM_CLASSES
    assert synthetic.NUM_CLASSES >= 20
    x, _ = a[0]
    assert x.shape == (24, 24, 3) and x.dtype == np.uint8 and x.std() > 5
    # validation draws differ from training draws with the same index
    assert not np.array_equal(_images(3, n=1, split=1)[0][0], a[0][0])


@pytest.mark.parametrize("size", [16, 40])
def test_synthetic_image_same_eagerly_and_in_dataset_map(size):
    eager_x, eager_y = synthetic.make_image(tf.constant(7, tf.int64), 1, 0, size)
    mapped = list(tf.data.Dataset.from_tensors(tf.constant(7, tf.int64)).map(lambda i: synthetic.make_image(i, 1, 0, size)))
    np.testing.assert_array_equal(eager_x.numpy(), mapped[0][0].numpy())
    assert int(eager_y) == int(mapped[0][1]) == 7


def test_synthetic_classes_are_not_colour_classes():
    """Mean colour carries no information about the class: a one-way ANOVA F statistic per
    channel stays near 1 (its value under "no class effect"), and a nearest-class-mean
    classifier on mean colour stays near chance on held-out images."""
    n = 60
    xs, ys = zip(*_images(0, n=synthetic.NUM_CLASSES * n, size=16))
    means = np.array([x.reshape(-1, 3).mean(0) for x in xs])
    ys = np.array(ys)
    k = synthetic.NUM_CLASSES
    class_means = np.array([means[ys == c].mean(0) for c in range(k)])
    within = np.array([means[ys == c].var(0, ddof=1) for c in range(k)]).mean(0)
    f_stat = n * class_means.var(0, ddof=1) / within
    assert f_stat.max() < 3.0, f_stat
    fit = (np.arange(len(ys)) // k) % 2 == 0  # every class in both halves
    centres = np.array([means[fit & (ys == c)].mean(0) for c in range(k)])
    pred = np.argmin(((means[~fit, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (pred == ys[~fit]).mean() < 3.0 / k


def test_synthetic_data_source(tmp_path):
    d = load_data(
        DataConfig(dataset="synthetic", image_size=32, batch_size=16, synthetic_train=48, synthetic_val=24, synthetic_test=24),
        seed=0,
    )
    assert (d.num_train, d.num_val, d.num_test) == (48, 24, 24) and d.class_names == synthetic.CLASS_NAMES
    xv, xt = next(iter(d.val))[0].numpy(), next(iter(d.test))[0].numpy()
    assert not np.array_equal(xv, xt)  # the test images are their own draws
    x, y = next(iter(d.val))
    assert x.shape == (16, 32, 32, 3)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pt") / "pretrain"
    exp = Experiment(
        name="pretrain",
        out_dir=str(out),
        data=DataConfig(
            dataset="synthetic", image_size=32, batch_size=16, synthetic_train=96, synthetic_val=48, synthetic_test=48
        ),
        model=ModelConfig(kind="regnet", backbone="regnetx002", dropout=0.0),
        phases=[PhaseConfig("pretrain", 1, 1e-3, "all")],
    )
    run_experiment(exp)
    return out, export_backbone(str(out))


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, too long for make test's 10 minutes
def test_exported_backbone_round_trips_into_finetune(pretrained, tmp_path):
    out, path = pretrained
    assert os.path.basename(path) == "backbone.weights.h5"
    info = json.loads((out / "backbone.json").read_text())
    assert info["variant"] == "regnetx002" and "synthetic" in info["pretrained_on"]
    source = get_backbone(load_model(str(out / "model.keras")))
    target = get_backbone(build_transfer_model("regnetx002", (48, 48, 3), 10, weights=path))
    for a, b in zip(source.weights, target.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    exp = Experiment(
        name="finetune",
        out_dir=str(tmp_path / "ft"),
        model=ModelConfig(kind="transfer", weights=path),
        phases=[PhaseConfig("frozen", 1, 1e-3, "head")],
    )
    assert weights_source(exp).startswith("self-pretrained on synthetic")


# The report's numbers, sentences, seeds and refusals are tested in process on run directories written by
# hand (tests/test_report.py); these check the same on real runs, in `make test-all`.
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    common = dict(data=DataConfig(dataset="digits", image_size=32, batch_size=64), seed=0)
    run_experiment(
        Experiment(
            name="scratch",
            out_dir=str(root / "scratch"),
            model=ModelConfig(kind="scratch", widths=[8, 16]),
            phases=[PhaseConfig("scratch", 2, 3e-3, "all")],
            **common,
        )
    )
    run_experiment(
        Experiment(
            name="finetune",
            out_dir=str(root / "finetune"),
            model=ModelConfig(kind="transfer"),
            phases=[PhaseConfig("frozen", 2, 1e-3, "head"), PhaseConfig("unfrozen", 1, 1e-4, "stages:1")],
            **common,
        )
    )
    return root


@pytest.mark.slow
def test_compare_writes_every_file_with_the_runs_numbers(two_runs, tmp_path):
    out = tmp_path / "report"
    summary = write_report([str(two_runs / "scratch"), str(two_runs / "finetune")], str(out))
    for f in ("report.md", "curves.png", "confusion.png", "summary.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 100, f
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for s in summary["runs"]:
        h = json.loads((two_runs / s["name"] / "history.json").read_text())
        eps = h["epochs"]
        best = max(eps, key=lambda e: e["val_accuracy"])
        assert s["best_val_accuracy"] == best["val_accuracy"] == h["best"]["val_accuracy"]
        assert s["best_epoch"] == h["best"]["epoch"]
        assert (s["final_train_loss"], s["final_val_loss"]) == (eps[-1]["loss"], eps[-1]["val_loss"])
        assert s["final_train_accuracy"] - s["final_val_accuracy"] == pytest.approx(s["accuracy_gap"])
        for p, hp in zip(s["phases"], h["phases"]):
            mine = [e for e in eps if e["phase"] == hp["name"]]
            assert p["best_val_accuracy"] == max(e["val_accuracy"] for e in mine)
            assert p["trainable_params"] == hp["trainable_params"]
    assert len(summary["runs"][1]["phases"]) == 2
    (pair,) = summary["comparisons"]
    assert "mcnemar" in pair  # same split: a paired test is possible
    md = (out / "report.md").read_text()
    assert re.search(r"\*\*(Scratch wins|Transfer wins|No clear winner)\*\*", md) and "McNemar" in md
    assert "finetune" in md and "scratch" in md and "majority class" in md
    assert summary["runs"][1]["weights"].startswith("none (random backbone")


@pytest.mark.slow
def test_compare_refuses_unfinished_or_single_runs(two_runs, tmp_path):
    with pytest.raises(UserError, match="at least two"):
        write_report([str(two_runs / "scratch")], str(tmp_path / "r"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a finished kerasxfer run"):
        write_report([str(two_runs / "scratch"), str(tmp_path / "empty")], str(tmp_path / "r"))


@pytest.mark.slow
def test_compare_groups_seed_runs_and_reports_mean_std(two_runs, tmp_path):
    """``compare`` over runs named ``<approach>-seed<k>`` (copies of the fixture's): grouped by approach."""
    import shutil
    import subprocess
    import sys

    for approach in ("scratch", "finetune"):
        for k in range(2):
            shutil.copytree(two_runs / approach, tmp_path / "seeds" / f"{approach}-seed{k}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "report"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.compare",
            f"--out_dir={out}",
            "--runs=" + ",".join(str(tmp_path / "seeds" / f"{a}-seed{k}") for a in ("scratch", "finetune") for k in (0, 1)),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["approaches"]) == ["finetune", "scratch"]
    for name, g in summary["approaches"].items():  # the seeds' test accuracies
        test = json.loads((two_runs / name / "metrics.json").read_text())["test"]["accuracy"]
        assert g["values"] == [test, test] and g["mean"] == pytest.approx(test) and g["std"] == 0
    assert "± " in (out / "report.md").read_text()

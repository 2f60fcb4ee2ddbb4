"""Sweeps: nested subsets, the plan, the sentences (in process, no training), and tiny real sweeps."""

import csv
import dataclasses
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats

from kerasxfer import recipes
from kerasxfer.config import DataConfig
from kerasxfer.data.split import Split
from kerasxfer.data.splitting import nested_subset
from kerasxfer.errors import UserError
from kerasxfer.records import Evaluation, SweepRow
from kerasxfer.reporting.sweep_report import data_points, data_sentences
from kerasxfer.sweep import SweepConfig, plan, subset_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_csv(path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _split(counts, prefix="img"):
    y = np.concatenate([np.full(n, c, np.int32) for c, n in enumerate(counts)])
    keys = [f"{prefix}/{c}/{i}.png" for c, n in enumerate(counts) for i in range(n)]
    return Split(np.arange(len(y)), y, keys, "test")


@pytest.mark.parametrize("seed", [0, 3])
def test_subsets_are_nested_stratified_and_keep_every_class(seed):
    part = _split([40, 23, 7, 1])
    previous = set()
    for f in (0.05, 0.1, 0.25, 0.5, 1.0):
        idx = nested_subset(part, f, seed)
        assert len(idx) == subset_size([40, 23, 7, 1], f)
        assert previous <= set(idx.tolist()), f"the {f} subset does not contain the smaller one"
        previous = set(idx.tolist())
        for c, n in enumerate([40, 23, 7, 1]):
            got = int((part.y[idx] == c).sum())
            assert got >= 1 and abs(got - f * n) <= 1, (f, c, got)
    assert sorted(previous) == list(range(len(part)))


def test_subset_depends_on_keys_and_seed_not_listing_order():
    part = _split([30, 30])
    order = np.random.default_rng(1).permutation(len(part))
    shuffled = Split(part.x[order], part.y[order], [part.keys[i] for i in order], "test")
    pick = lambda p, s: sorted(p.keys[i] for i in nested_subset(p, 0.3, s))  # noqa: E731
    assert pick(part, 0) == pick(shuffled, 0)
    assert pick(part, 0) != pick(part, 1)


def _cfg(kind="data", **kw):
    data = DataConfig(dataset="digits", image_size=32, batch_size=16)
    scratch = recipes.scratch(epochs=2, data=data, out_dir="runs/x")
    transfer = recipes.finetune(
        backbone="regnetx002",
        weights=None,
        frozen_epochs=2,
        finetune_epochs=3,
        unfreeze_stages=2,
        data=dataclasses.replace(data),
        out_dir="runs/y",
    )
    return SweepConfig(kind=kind, out_dir="runs/sweep", scratch=scratch, transfer=transfer, **kw)


def test_data_plan_members_epochs_and_same_split():
    cfg = _cfg(fractions=(0.1, 1.0), seeds=2, min_steps=20).validate()
    members = plan(cfg, [50, 50])
    assert len(members) == 2 * 2 * 3
    by = {(m.arm, m.fraction, m.seed): m.exp for m in members}
    small = by["finetune", 0.1, 1]
    assert small.out_dir == os.path.join("runs/sweep", "data", "f0.1", "finetune-seed1")
    assert small.seed == 1 and small.data.train_fraction == 0.1 and small.data.split_seed == 0
    # 10 images, batch 16: one step per epoch, so 20 steps need 20 epochs (the solved frozen phase takes none);
    # the full set keeps its epochs
    assert [p.epochs for p in small.phases] == [1, 20]
    assert [p.epochs for p in by["finetune", 1.0, 0].phases] in ([1, 3], [1, 7])
    assert by["frozen", 0.1, 0].phases[1].epochs == 0
    assert by["scratch", 1.0, 0].data.image_size == 32
    assert all(m.exp.data.split_seed == 0 for m in members)


def test_depth_plan_rules():
    cfg = _cfg("depth", depths=None, min_steps=0).validate()
    members = plan(cfg, [50, 50])
    assert [m.depth for m in members] == ["0", "1", "2", "3", "4", "all"]
    assert [m.exp.phases[1].trainable for m in members] == ["head", "stages:1", "stages:2", "stages:3", "stages:4", "all"]
    assert all(m.exp.phases[0].trainable == "head" for m in members)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(fractions=(0.5, 0.5)), "distinct"),
        (dict(fractions=(0.0, 1.0)), "above 0"),
        (dict(kind="depth", depths=["5"]), "from 0 to 4"),
        (dict(kind="depth", budget="time"), "--sweep=data"),
        (dict(seeds=0), "--seeds"),
        (dict(min_steps=-1), "--min_steps"),
        (dict(kind="size"), "--sweep"),
    ],
)
def test_sweep_config_refuses_bad_values_in_one_sentence(kw, words):
    kind = kw.pop("kind", "data")
    with pytest.raises(UserError) as e:
        _cfg(kind, **kw).validate()
    msg = str(e.value)
    assert words in msg and msg.endswith(".") and "\n" not in msg and not re.search(r"\. [A-Z]", msg)


def _run(labels, preds):
    """What the sweep's McNemar reads of a run: its test split's labels and predictions."""
    return SimpleNamespace(test=Evaluation(labels=labels, predictions=preds, loss=0.0))


def _points(per_fraction):
    """Fabricated rows and runs: per fraction (ipc, finetune correct, scratch correct) out of 100 test images."""
    rows, runs = [], {}
    labels = [0] * 100
    for f, (ipc, ft, sc) in per_fraction.items():
        for arm, correct in (("finetune", ft), ("scratch", sc)):
            name = f"f{f}/{arm}-seed0"
            runs[name] = _run(labels, [0] * correct + [1] * (100 - correct))
            rows.append(
                SweepRow(
                    sweep="data",
                    arm=arm,
                    depth="",
                    fraction=f,
                    seed=0,
                    train_images=2 * ipc,
                    images_per_class=ipc,
                    epochs=1,
                    images_seen=2 * ipc,
                    trainable_params=1,
                    best_epoch=1,
                    best_val_accuracy=0.5,
                    test_accuracy=correct / 100,
                    run=name,
                )
            )
    return data_points(rows, runs)


def test_sentence_within_noise_from_a_size_on():
    s = data_sentences(_points({0.1: (5, 90, 40), 0.5: (25, 92, 89), 1.0: (50, 95, 94)}), "net", 1)[0]
    assert s.startswith("Fine-tuning (net) beats scratch by 50.0 points at 5 images per class")
    assert s.endswith("from 25 images per class on, the difference is within noise.")


def test_sentence_when_transfer_stays_ahead_or_never_differs():
    ahead = data_sentences(_points({0.1: (5, 90, 40), 1.0: (50, 95, 60)}), "net", 1)[0]
    # 35 images only fine-tuning gets right, none only scratch: McNemar's continuity-corrected chi-square (scipy)
    p = scipy.stats.chi2.sf((35 - 0 - 1) ** 2 / 35, df=1)
    assert ahead.endswith(
        f"fine-tuning beats scratch by 35.0 points at 50 images per class (McNemar p = {p:.3g}), "
        "larger than the noise at the largest size."
    )
    noise = data_sentences(_points({0.1: (5, 50, 49), 1.0: (50, 90, 90)}), "net", 1)[0]
    assert noise.startswith(
        "At 5 images per class fine-tuning (net) and scratch are within noise of each other (50.00 % vs 49.00 %"
    )
    assert noise.endswith("at every size tried the difference is within noise.")
    flipped = data_sentences(_points({0.1: (5, 40, 90)}), "net", 1)[0]
    assert flipped.startswith("Scratch beats fine-tuning (net) by 50.0 points")


def test_sentence_names_a_significant_size_between_two_noisy_ones():
    lines = data_sentences(_points({0.05: (5, 82, 82), 0.5: (54, 90, 97), 1.0: (108, 97, 96)}), "net", 2)
    # 7 discordant images, all for scratch: McNemar's exact binomial test (scipy)
    p = scipy.stats.binomtest(0, 7, 0.5).pvalue
    assert lines[1] == (
        "Larger than the noise only at: scratch beats fine-tuning by 7.0 points at 54 images per "
        f"class (McNemar p = {p:.3g}); from 108 images per class on, the difference is within noise."
    )
    assert "2 seeds" in lines[-1]


def test_sweep_flags_refused_before_tensorflow_loads():
    r = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--fractions=0.1,abc"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "kerasxfer: error: --fractions=0.1,abc must be numbers, e.g. 0.05,0.1,0.25,0.5,1."
    )


# ------------------------------------------------------------------ real, tiny sweeps
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-class folder of 32x32 images and a random RegNetX002 backbone saved as a weights file."""
    from PIL import Image

    from kerasxfer.models.regnet import build_backbone

    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    for c, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        d = root / "data" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(16):
            arr = (rng.random((32, 32, 3)) * 80 + np.array(color)).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i}.png")
    weights = str(root / "backbone.weights.h5")
    build_backbone("regnetx002", (32, 32, 3)).save_weights(weights)
    return root, weights


def sweep_args(tiny, out, *extra):
    root, weights = tiny
    return [
        "--dataset=" + str(root / "data"),
        "--image_size=32",
        "--scratch_image_size=32",
        "--batch_size=8",
        "--backbone=regnetx002",
        f"--weights={weights}",
        "--epochs=1",
        "--frozen_epochs=1",
        "--finetune_epochs=1",
        "--unfreeze_stages=2",
        "--min_steps=0",
        "--widths=8,16",
        f"--out_dir={out}",
        *extra,
    ]


def run_sweep_cli(args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def data_sweep(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sweep"
    r = run_sweep_cli(sweep_args(tiny, out, "--fractions=0.5,1"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_data_sweep_writes_ordinary_runs_and_a_csv_its_sentence_agrees_with(data_sweep):
    out, r = data_sweep
    rows = read_csv(out / "data" / "sweep.csv")
    assert [(x["fraction"], x["arm"]) for x in rows] == [
        ("0.5", "frozen"),
        ("0.5", "finetune"),
        ("0.5", "scratch"),
        ("1", "frozen"),
        ("1", "finetune"),
        ("1", "scratch"),
    ]
    for x in rows:
        assert os.path.isfile(out / "data" / x["run"] / "model.keras")
    half, full = rows[0], rows[3]
    assert int(half["train_images"]) < int(full["train_images"])
    # the frozen backbone's pooled features were computed once, then reused by every later run; the activations
    # where the unfrozen stages begin likewise, by the two fine-tuned members
    feats = [line for line in r.stderr.splitlines() if "frozen backbone: pooled features" in line]
    acts = [line for line in r.stderr.splitlines() if "frozen backbone: activations at" in line]
    assert ["computed once" in line for line in feats] == [True, False, False, False]
    assert all("reused from earlier runs" in line for line in feats[1:])
    assert ["computed once" in line for line in acts] == [True, False]
    # the sentence's numbers are the CSV's: the difference at the smallest size and its images per class
    sentence = [line for line in r.stdout.splitlines() if line.startswith(" - ")][0]
    ft = float(rows[1]["test_accuracy"]) - float(rows[2]["test_accuracy"])
    assert f"at {float(half['images_per_class']):g} images per class" in sentence.lower()
    m = re.search(r"by (\d+\.\d) points at", sentence)
    if m:
        assert float(m.group(1)) == round(abs(100 * ft), 1)
    else:
        m = re.search(r"within noise of each other \((\d+\.\d\d) % vs (\d+\.\d\d) %", sentence)
        assert m, sentence
        assert (float(m.group(1)), float(m.group(2))) == (
            round(100 * float(rows[1]["test_accuracy"]), 2),
            round(100 * float(rows[2]["test_accuracy"]), 2),
        )
    for name in ("sweep.md", "sweep.json", "sweep_cost.csv", "curves_data.png"):
        assert os.path.getsize(out / "data" / name) > 0


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_rerun_trains_nothing_and_writes_the_same_csv(data_sweep, tiny):
    out, _ = data_sweep
    before = (out / "data" / "sweep.csv").read_bytes()
    r = run_sweep_cli(sweep_args(tiny, out, "--fractions=0.5,1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "epoch 1/" not in r.stderr and r.stderr.count("is already finished") == 6
    assert (out / "data" / "sweep.csv").read_bytes() == before


def test_depth_rules_train_more_parameters_with_depth_and_the_head_alone_at_zero():
    from kerasxfer.evaluation import count_params
    from kerasxfer.models import apply_trainable, build_transfer_model

    cfg = _cfg("depth", min_steps=0).validate()
    model = build_transfer_model("regnetx002", (32, 32, 3), 3)
    head = count_params(model.trainable_weights)  # the model is built with its backbone frozen
    counts = []
    for m in plan(cfg, [10, 10, 10]):
        apply_trainable(model, m.exp.phases[1].trainable, cfg.num_stages, transfer=True)
        counts.append(count_params(model.trainable_weights))
    assert counts[0] == head == count_params(model.get_layer("head_dense").weights)
    assert all(a < b for a, b in zip(counts, counts[1:])), counts


@pytest.mark.slow
def test_depth_sweep_trainable_parameters_grow_with_depth(tiny, tmp_path):
    r = run_sweep_cli(sweep_args(tiny, tmp_path / "sweep", "--sweep=depth", "--depths=0,2,4,all"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_csv(tmp_path / "sweep" / "depth" / "sweep.csv")
    assert [x["depth"] for x in rows] == ["0", "2", "4", "all"]
    params = [int(x["trainable_params"]) for x in rows]
    assert all(a < b for a, b in zip(params, params[1:])), params
    import json

    history = json.loads((tmp_path / "sweep" / "depth" / rows[0]["run"] / "history.json").read_text())
    assert params[0] == history["phases"][0]["trainable_params"]  # depth 0 trains exactly the head
    assert "The best depth is" in r.stdout


@pytest.mark.slow
def test_sweep_killed_with_sigkill_and_rerun_finishes_with_the_same_csv(tiny, tmp_path):
    from tests.processes import kill_when

    args = lambda out: sweep_args(tiny, out, "--fractions=0.5,1", "--finetune_epochs=4")  # noqa: E731
    ref = run_sweep_cli(args(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed"
    state = out / "data" / "f1" / "finetune-seed0" / "resume" / "state.json"
    kill_when([sys.executable, "-m", "experiments.sweep", *args(out)], ROOT, state.exists)
    assert state.exists(), "the sweep ended before the kill"
    again = run_sweep_cli(args(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing" in again.stderr
    assert (out / "data" / "sweep.csv").read_bytes() == (tmp_path / "ref" / "data" / "sweep.csv").read_bytes()


def test_time_budget_ends_the_run_after_the_epoch_that_reaches_it_and_a_rerun_keeps_it(tmp_path):
    from kerasxfer.training import run_experiment

    exp = recipes.scratch(epochs=3, widths=[4], data=DataConfig(image_size=16, batch_size=64), out_dir=str(tmp_path))
    exp.max_train_seconds = 1e-6
    metrics = run_experiment(exp)
    import json

    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1]
    assert history["ended_early"] == {"epoch": 1, "reason": "time budget of 1e-06 s reached"}
    assert metrics["best_epoch"] == 1
    assert run_experiment(exp) == metrics  # finished: nothing trains again

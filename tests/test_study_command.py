"""`make study` / `python -m experiments.study` on a small generated folder: runs, report, verdict, progress."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.processes import kill_when

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("study") / "my photos"
    rng = np.random.default_rng(1)
    for c, color in enumerate([(220, 40, 40), (40, 220, 40), (40, 40, 220)]):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(14):
            Image.fromarray((rng.random((40, 40, 3)) * 70 + np.array(color)).clip(0, 255).astype(np.uint8)).save(d / f"{i}.jpg")
    return root


def study_args(photos, *extra):
    return [
        f"--dataset={photos}",
        "--image_size=32",
        "--scratch_image_size=32",
        "--batch_size=8",
        "--backbone=regnetx002",
        "--weights=none",
        "--epochs=3",
        "--frozen_epochs=1",
        "--finetune_epochs=1",
        "--widths=8,16",
        "--min_steps=0",
        *extra,
    ]


def run_study(args, cwd, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "experiments.study", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


@pytest.fixture(scope="module")
def study(photos, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    r = run_study(study_args(photos, "--folds=1"), cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd / "runs" / "study" / "my_photos", r  # the folder name, made safe


def test_study_writes_each_arm_and_the_report_and_prints_its_verdict(study):
    out, r = study
    # a random transfer arm is its own control: two runs
    assert sorted(os.listdir(out)) == ["report", "scratch", "transfer"]
    for arm in ("scratch", "transfer"):
        assert os.path.isfile(out / arm / "metrics.json") and os.path.isfile(out / arm / "model.keras")
    summary = json.loads((out / "report" / "summary.json").read_text())
    verdict = [line for line in r.stdout.splitlines() if line.startswith("verdict: ")]
    assert verdict == ["verdict: " + summary["summary"][0].replace("**", "")]
    assert re.match(r"verdict: (No clear winner|Scratch wins|Transfer wins|No verdict|No winner named): ", verdict[0]), verdict[0]
    assert "one train/val/test split (--folds=1)" in r.stderr
    report = (out / "report" / "report.md").read_text()
    assert "- " + summary["summary"][0] in report.split("## Executive summary")[1].splitlines()[2]
    assert "report: " + os.path.join("runs", "study", "my_photos", "report", "report.html") in r.stdout


def test_progress_lines_once_per_epoch_with_a_falling_estimate(study):
    _, r = study
    lines = re.findall(r"\[study\] run (\d) of 2 \((\w+)\), epoch (\d+)/(\d+), study (\d+) % done, (.*)", r.stderr)
    assert [(run, ep) for run, _, ep, _, _, _ in lines] == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"), ("2", "2")]
    scratch = [left for run, _, _, _, _, left in lines if run == "1"]

    def seconds(text):
        if text == "almost done":
            return 0
        n = float(re.search(r"about (\d+)", text).group(1))
        return n * 60 if "min" in text else n

    assert all(seconds(b) <= seconds(a) for a, b in zip(scratch, scratch[1:])), scratch
    shares = [int(s) for *_, s, _ in lines]
    assert shares == sorted(shares)


def test_second_study_trains_nothing_and_reprints_the_verdict(study, photos):
    out, first = study
    again = run_study(study_args(photos, "--folds=1"), out.parent.parent.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "epoch 1/" not in again.stderr and again.stderr.count("is already finished") == 2
    verdict = lambda r: [l for l in r.stdout.splitlines() if l.startswith("verdict: ")]  # noqa: E731
    assert verdict(again) == verdict(first)


@pytest.mark.slow
def test_study_killed_and_rerun_reports_the_same_numbers(photos, tmp_path):
    args = study_args(photos, "--weights=imagenet", "--backbone=efficientnet_lite0", "--finetune_epochs=3", "--folds=1")
    ref = run_study(args + ["--out_dir=ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    state = tmp_path / "killed" / "transfer" / "resume" / "state.json"
    p = subprocess.Popen(
        [sys.executable, "-m", "experiments.study", *args, "--out_dir=killed"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    deadline = time.time() + 600
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 2) and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = run_study(args + ["--out_dir=killed"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing" in again.stderr

    def numbers(d):
        runs = json.loads((tmp_path / d / "report" / "summary.json").read_text())["runs"]
        return [(r["name"], r["test_accuracy"], r["best_epoch"]) for r in runs]

    assert numbers("killed") == numbers("ref")
    assert sorted(os.listdir(tmp_path / "killed")) == ["control", "report", "scratch", "transfer"]


@pytest.fixture(scope="module")
def pool200(tmp_path_factory):
    """200 small photos of two classes (bright vs dark, noisy): a pool small enough for --folds=auto to choose 5."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pool") / "pool"
    rng = np.random.default_rng(2)
    for c, level in enumerate((90, 160)):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(100):
            img = (rng.normal(level, 40, (20, 20, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"c{c}" / f"{i:03d}.png")
    return root


@pytest.mark.slow
def test_five_fold_study_tests_every_image_once_and_resumes_in_the_fold_it_was_killed_in(pool200, tmp_path):
    """make study FOLDS=auto on 200 images: 5 folds; a kill inside fold 3 continues there; every image tested once.

    --exhaustive: the solved head separates bright from dark after two folds, where the sequential rule would
    stop the study (tests/test_sequential.py tests that stop)."""
    args = [
        "--exhaustive",
        f"--dataset={pool200}",
        "--image_size=32",
        "--scratch_image_size=16",
        "--batch_size=16",
        "--backbone=regnetx002",
        "--weights=none",
        "--epochs=2",
        "--frozen_epochs=1",
        "--finetune_epochs=1",
        "--widths=8",
        "--min_steps=0",
        "--out_dir=cv",
    ]
    env = {**os.environ, "PYTHONPATH": ROOT}
    state = tmp_path / "cv" / "fold3" / "scratch" / "resume" / "state.json"
    kill_when([sys.executable, "-m", "experiments.study", *args], tmp_path, state.exists, env)
    assert state.exists(), "the study never reached fold 3"
    finished = {f: os.path.getmtime(tmp_path / "cv" / f / "scratch" / "metrics.json") for f in ("fold1", "fold2")}
    r = run_study(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cross-validation: 5 folds over all 200 labelled images (auto" in r.stderr
    assert "continuing " + os.path.join("cv", "fold3", "scratch") + " after epoch 1" in r.stderr
    assert r.stderr.count("is already finished") == 4  # folds 1 and 2, both arms: not trained again
    assert {f: os.path.getmtime(tmp_path / "cv" / f / "scratch" / "metrics.json") for f in finished} == finished
    summary = json.loads((tmp_path / "cv" / "report" / "summary.json").read_text())
    assert summary["verdict"]["num_images"] == 200 and summary["verdict"]["folds"] == 5
    assert all(c["mcnemar"]["n"] == 200 for c in summary["comparisons"])
    for arm in ("scratch", "transfer"):  # one out-of-fold prediction per image: the five test folds partition the pool
        keys = []
        for k in range(1, 6):
            data = json.loads((tmp_path / "cv" / f"fold{k}" / arm / "data.json").read_text())
            assert (data["folds"], data["fold"]) == (5, k)
            metrics = json.loads((tmp_path / "cv" / f"fold{k}" / arm / "metrics.json").read_text())
            keys.append(len(metrics["test"]["labels"]))
        assert sum(keys) == 200 and all(k == 40 for k in keys)
    assert "out-of-fold" in summary["summary"][0]


@pytest.mark.slow
def test_study_with_seeds_trains_each_arm_per_seed_on_one_split_and_reports_mean_std(photos, tmp_path):
    """The one multi-seed mechanism: ``--seeds=2`` trains every arm with seeds 0 and 1 in one process, on the same
    split (the paired tests need the same test images), and the report gives each approach's mean ± std."""
    import math

    r = run_study(study_args(photos, "--folds=1", "--seeds=2", "--control=false"), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "runs" / "study" / "my_photos"
    assert sorted(os.listdir(out)) == ["report", "scratch-seed0", "scratch-seed1", "transfer-seed0", "transfer-seed1"]
    tests = {json.dumps(json.loads((out / d / "data.json").read_text())["splits"]) for d in os.listdir(out) if d != "report"}
    assert len(tests) == 1  # one split for every seed
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert sorted(summary["approaches"]) == ["scratch", "transfer"]
    for g in summary["approaches"].values():
        assert g["seeds"] == [0, 1]
        assert g["std"] == pytest.approx(abs(g["values"][0] - g["values"][1]) / math.sqrt(2))
    assert "± " in (out / "report" / "report.md").read_text()


@pytest.mark.slow
def test_study_with_several_backbones_compares_each_with_scratch_and_names_the_best(photos, tmp_path):
    r = run_study(study_args(photos, "--folds=1", "--backbones=regnetx002,mobilenetv3small"), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "runs" / "study" / "my_photos"
    assert sorted(os.listdir(out)) == ["report", "scratch", "transfer-mobilenetv3small", "transfer-regnetx002"]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["verdict"]["best_backbone"].startswith("Of the 2 transfer arms, ")
    assert len(summary["verdict"]["pairs"]) == 3  # every contender against every other, Holm-corrected
    assert " - Of the 2 transfer arms, " in r.stdout

"""The report from run directories written by hand: numbers, sentences, seeds, refusals (no TensorFlow, no training)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from kerasxfer import fsio, recipes, rundir
from kerasxfer.errors import UserError
from kerasxfer.reporting.compare_report import write_report
from kerasxfer.reporting.stats import mcnemar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_run(
    root,
    name,
    exp,
    val_accs,
    correct,
    seed=0,
    seconds=10.0,
    test_keys=None,
    classes=("a", "b", "c"),
    source="digits",
    fit=0.95,
    probe=None,
):
    """A finished run directory of ``exp`` whose epochs reach ``val_accs`` and whose best model gets ``correct``
    (one boolean per test image) right; each epoch's training accuracy is 5 points above its validation accuracy,
    and at least ``fit`` (a run that fits its training images: kerasxfer.reporting.fit)."""
    out = root / name
    out.mkdir(parents=True)
    exp.out_dir, exp.seed = str(out), seed
    labels = [i % 3 for i in range(len(correct))]
    preds = [y if ok else (y + 1) % 3 for y, ok in zip(labels, correct)]
    epochs, phases, e = [], [], 0
    for p in exp.phases:
        phases.append(
            {
                "name": p.name,
                "first_epoch": e + 1,
                "last_epoch": e + p.epochs,
                "lr": p.lr,
                "trainable": p.trainable,
                "trainable_params": 100 * (len(phases) + 1),
                "total_params": 1000,
                "cached_features": False,
                **({"probe": {"train_accuracy": probe, "C": 1.0}} if probe is not None and p.trainable == "head" else {}),
            }
        )
        for _ in range(p.epochs):
            acc = val_accs[e]
            epochs.append(
                {
                    "epoch": e + 1,
                    "phase": p.name,
                    "accuracy": max(fit, min(1.0, acc + 0.05)),
                    "loss": 1.0 - acc,
                    "val_accuracy": acc,
                    "val_loss": 1.1 - acc,
                    "learning_rate": p.lr,
                }
            )
            e += 1
    best = max(epochs, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    history = {
        "run": exp.name,
        "weights_source": "made by hand",
        "phases": phases,
        "epochs": epochs,
        "best": {
            "epoch": best["epoch"],
            "phase": best["phase"],
            "val_accuracy": best["val_accuracy"],
            "val_loss": best["val_loss"],
        },
    }
    n = len(correct)
    test = {
        "num_images": n,
        "accuracy": float(np.mean(correct)),
        "loss": 0.5,
        "labels": labels,
        "predictions": preds,
        "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    }
    splits = {
        "train": {"count": 30, "from": "the rest"},
        "val": {"count": n, "from": "20% of it"},
        "test": {"count": n, "from": "20% of it", "fingerprint": str(test_keys or n)},
    }
    files = {
        rundir.CONFIG: exp.to_dict(),
        rundir.HISTORY: history,
        rundir.DATA: {
            "source": source,
            "class_names": list(classes),
            "num_train": 30,
            "num_val": n,
            "num_test": n,
            "image_size": 32,
            "split_seed": 0,
            "splits": splits,
        },
        rundir.METRICS: {
            "class_names": list(classes),
            "val": dict(test, accuracy=best["val_accuracy"]),
            "test": test,
            "best_epoch": best["epoch"],
            "best_phase": best["phase"],
            "total_params": 1000,
        },
        rundir.TIMINGS: {
            "epochs": [{"epoch": r["epoch"], "seconds": 1.0, "images_per_sec": 100.0} for r in epochs],
            "phases": {p.name: seconds / len(exp.phases) for p in exp.phases},
            "train_seconds": seconds,
        },
    }
    for f, obj in files.items():
        fsio.write_json(str(out / f), obj)
    return out


@pytest.fixture
def study(tmp_path):
    n = 60
    scratch = fake_run(tmp_path, "scratch", recipes.scratch(epochs=3), [0.5, 0.9, 0.8], [True] * 57 + [False] * 3)
    finetune = fake_run(
        tmp_path,
        "finetune",
        recipes.finetune(frozen_epochs=2, finetune_epochs=2, weights="none", frozen_head="epochs"),
        [0.4, 0.6, 0.7, 0.75],
        [True] * 40 + [False] * (n - 40),
        seconds=20.0,
    )
    return scratch, finetune


def test_report_states_the_runs_numbers_and_the_winner(study, tmp_path):
    scratch, finetune = study
    out = tmp_path / "report"
    summary = write_report([str(scratch), str(finetune)], str(out))
    for f in ("report.md", "curves.png", "confusion.png", "summary.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 100, f
    assert sorted(os.listdir(out)) == [
        ".kerasxfer-report",
        "confusion.png",
        "curves.png",
        "lr.png",
        "report.html",
        "report.md",
        "summary.json",
        "verdict.png",
    ]  # no temporaries; the marker says the files are ours
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    s, f = summary["runs"]
    assert (s["best_val_accuracy"], s["best_epoch"], s["final_val_accuracy"]) == (0.9, 2, 0.8)
    assert (s["test_accuracy"], f["test_accuracy"]) == (0.95, 40 / 60)
    assert s["accuracy_gap"] == pytest.approx(0.15) and s["loss_gap"] == pytest.approx(0.1)
    assert [p["best_val_accuracy"] for p in f["phases"]] == [0.6, 0.75]
    assert [p["trainable_params"] for p in f["phases"]] == [100, 200]
    assert s["model"] == "scratch CNN" and f["model"] == "regnetx002" and f["train_seconds"] == 20.0
    (pair,) = summary["comparisons"]  # contenders in name order: finetune minus scratch
    assert (pair["a"], pair["b"]) == ("finetune", "scratch")
    assert pair["mcnemar"]["b"] == 0 and pair["mcnemar"]["c"] == 17  # scratch right where finetune is wrong
    lines = summary["summary"]
    winner = lines[0]
    assert winner.startswith("**Scratch wins**") and "95.00 % accuracy" in winner and "+28.33 points" in winner
    assert "on the same 60 test images" in winner and "larger than the noise" in winner
    lo, hi = summary["verdict"]["main_pair"]["interval"]
    assert 0 < lo < 0.2833 < hi and f"95 % interval {100 * lo:+.2f} to {100 * hi:+.2f}" in winner
    assert summary["baseline"]["accuracy"] == pytest.approx(1 / 3) and summary["figure"] == "accuracy"
    assert any("Unfreezing moved **finetune** from 60.00 % to 75.00 % (+15.00 points)" in l for l in lines)
    assert any("ended 10.0 points below its best epoch (2)" in l for l in lines)
    md = (out / "report.md").read_text()
    assert winner in md and "| scratch | contender | scratch CNN |" in md and "## finetune" in md
    assert "| test accuracy (95 % interval) | best val_acc |" in md and "| 95.00 % (95 % interval 86.3–98.3 %) | 90.00 % |" in md
    assert "| majority class (a) | baseline |" in md
    assert "Data: digits; train 30 (the rest), val 60 (20% of it), test 60 (20% of it)." in md


@pytest.mark.parametrize("solved", [False, True])
def test_an_arm_that_did_not_fit_its_training_images_underfits_and_no_winner_is_named(tmp_path, solved):
    """Scratch is ahead beyond the noise, but the transfer arm never fit its own training images (65 % at its last
    epoch against 100 % that its solved probe reached on the same features, or that any head can reach): the
    report says "underfits", not "overfits", and the headline blames the training, not the approach."""
    scratch = fake_run(tmp_path, "scratch", recipes.scratch(epochs=3), [0.5, 0.9, 0.8], [True] * 57 + [False] * 3)
    transfer = fake_run(
        tmp_path,
        "transfer",
        recipes.finetune(frozen_epochs=2, finetune_epochs=2, frozen_head="epochs"),
        [0.4, 0.5, 0.55, 0.6],
        [True] * 40 + [False] * 20,
        fit=0.0,
        probe=1.0 if solved else None,
    )
    summary = write_report([str(scratch), str(transfer)], str(tmp_path / "report"))
    head, lines = summary["summary"][0], summary["summary"]
    assert head.startswith("**No winner named**: **transfer** did not fit its training images (train accuracy 65.00 %")
    assert "would read a training failure as the approach being worse" in head and "+28.33 points" in head
    assert ("solved linear probe's" in head) == solved and ("--frozen_head=solve" in head) != solved
    assert summary["verdict"]["winner"] is None
    assert summary["verdict"]["recommended"] is None  # no final model is trained on a headline that names none
    notes = [l for l in lines if l.startswith("**transfer** underfits")]
    assert len(notes) == 1 and not any("**transfer** overfits" in l for l in lines)
    t = next(r for r in summary["runs"] if r["name"] == "transfer")
    assert t["fit"]["tag"] == "underfits" and t["fit"]["supported"] == 1.0
    assert t["fit"]["basis"] == ("probe" if solved else "capacity")


def test_without_a_winner_the_headline_still_says_which_contender_did_not_fit(tmp_path):
    same = [True] * 50 + [False] * 10
    a = fake_run(tmp_path, "a", recipes.scratch(epochs=1), [0.80], same)
    b = fake_run(tmp_path, "b", recipes.scratch(epochs=1), [0.60], same, fit=0.0)
    head = write_report([str(a), str(b)], str(tmp_path / "report"))["summary"][0]
    assert head.startswith("**No clear winner**") and "within the noise" in head
    assert "Beware: **b** did not fit its training images (train accuracy 65.00 % at its best epoch" in head
    assert "**a** did not fit" not in head


def test_overfits_is_said_only_of_a_run_that_fits_its_training_images(tmp_path):
    a = fake_run(tmp_path, "a", recipes.scratch(epochs=2), [0.6, 0.7], [True] * 50 + [False] * 10, fit=1.0)
    b = fake_run(tmp_path, "b", recipes.scratch(epochs=2), [0.6, 0.7], [True] * 48 + [False] * 12, fit=0.5)
    lines = write_report([str(a), str(b)], str(tmp_path / "report"))["summary"]
    assert any(l.startswith("**a** overfits: train accuracy 100.00 % vs val 70.00 %") for l in lines)
    assert any(l.startswith("**b** underfits: train accuracy 75.00 %") and "more optimizer steps" in l for l in lines)
    assert not any(l.startswith("**b** overfits") for l in lines)


def test_equal_predictions_are_within_the_noise(tmp_path):
    same = [True] * 50 + [False] * 10
    a = fake_run(tmp_path, "a", recipes.scratch(epochs=1), [0.80], same)
    b = fake_run(tmp_path, "b", recipes.scratch(epochs=1), [0.79], same)
    summary = write_report([str(a), str(b)], str(tmp_path / "r"))
    assert summary["comparisons"][0]["mcnemar"]["p_value"] == 1.0
    first = summary["summary"][0]
    assert first.startswith("**No clear winner**") and "within the noise" in first and "wins" not in first
    assert "score the same here" in first and summary["verdict"]["winner"] is None


def test_seeds_of_one_approach_are_grouped_to_mean_and_std(tmp_path):
    runs = [
        fake_run(tmp_path, f"scratch-seed{k}", recipes.scratch(epochs=1), [v], [True] * k1 + [False] * (10 - k1), seed=k)
        for k, (v, k1) in enumerate(((0.8, 9), (0.9, 7)))
    ]
    runs.append(
        fake_run(tmp_path, "finetune", recipes.finetune(frozen_epochs=1, finetune_epochs=1), [0.5, 0.6], [True] * 5 + [False] * 5)
    )
    summary = write_report([str(r) for r in runs], str(tmp_path / "r"))
    g = summary["approaches"]["scratch"]  # test accuracies, over the seeds
    assert g["seeds"] == [0, 1] and g["mean"] == pytest.approx(0.8) and g["std"] == pytest.approx(0.2 / math.sqrt(2))
    assert "## Seeds" in (tmp_path / "r" / "report.md").read_text()
    # seeds of one approach are not rivals: the approach is represented by its best seed on *validation*
    first = summary["summary"][0]  # 70 % vs 50 % on 10 images: within the noise, and neither beats 40 % for sure
    assert first.startswith("**No clear winner**") and "**scratch-seed1**" in first and "70.00 %" in first
    assert "no contender beats the majority-class baseline" in first
    assert "finetune" in first and "scratch-seed0" not in first


@pytest.mark.parametrize(
    "change, what",
    [
        (dict(classes=("x", "y", "z")), "class names differ"),
        (dict(source="image folder /elsewhere"), "datasets differ"),
        (dict(test_keys="other images"), "test images differ"),
    ],
)
def test_runs_on_different_data_are_refused_naming_the_difference(study, tmp_path, change, what):
    scratch, _ = study
    other = fake_run(tmp_path, "other", recipes.scratch(epochs=1), [0.5], [True] * 60, **change)
    with pytest.raises(UserError, match=f"cannot be compared: their {what}"):
        write_report([str(scratch), str(other)], str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_runs_whose_stored_test_labels_differ_are_refused(study, tmp_path):
    """The paired tests read each run's per-image labels: the same images in the same order, or no comparison."""
    scratch, finetune = study
    metrics = json.loads((finetune / rundir.METRICS).read_text())
    metrics["test"]["labels"] = metrics["test"]["labels"][1:] + metrics["test"]["labels"][:1]  # same images, shifted
    (finetune / rundir.METRICS).write_text(json.dumps(metrics))
    with pytest.raises(UserError, match="cannot be compared: their test labels differ; compare runs"):
        write_report([str(scratch), str(finetune)], str(tmp_path / "r"))


def test_runs_from_before_the_test_split_are_refused(study, tmp_path):
    scratch, finetune = study
    metrics = json.loads((finetune / rundir.METRICS).read_text())
    del metrics["test"]
    (finetune / rundir.METRICS).write_text(json.dumps(metrics))
    with pytest.raises(UserError, match="trained before kerasxfer held out a test split"):
        write_report([str(scratch), str(finetune)], str(tmp_path / "r"))


def test_refusals_are_one_sentence_and_write_nothing(study, tmp_path):
    scratch, _ = study
    out = tmp_path / "r"
    with pytest.raises(UserError, match="at least two"):
        write_report([str(scratch)], str(out))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a finished kerasxfer run"):
        write_report([str(scratch), str(tmp_path / "empty")], str(out))
    with pytest.raises(UserError, match="are the same run directory"):
        write_report([str(scratch), str(scratch)], str(out))
    (tmp_path / "link").symlink_to(scratch)  # the same run through a symlink: compared with itself
    with pytest.raises(UserError, match="are the same run directory"):
        write_report([str(scratch), str(tmp_path / "link")], str(out))
    (tmp_path / "elsewhere").mkdir()
    copy = fake_run(tmp_path / "elsewhere", "scratch", recipes.scratch(epochs=1), [0.5], [True] * 60)
    with pytest.raises(UserError, match="share the folder name"):
        write_report([str(scratch), str(copy)], str(out))
    assert not out.exists()


def test_mcnemar_matches_hand_computed_cases():
    y = np.zeros(100, int)
    a, b = np.zeros(100, int), np.zeros(100, int)
    b[:10], a[10:12] = 1, 1  # A right / B wrong on 10 images, the reverse on 2: exact two-sided binomial
    r = mcnemar(y, a, b)
    assert (r["b"], r["c"]) == (10, 2) and r["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    a, b = np.zeros(100, int), np.zeros(100, int)
    b[:30], a[30:40] = 1, 1  # 30 vs 10: chi-square with continuity correction, (|30-10|-1)^2/40 = 9.025
    r = mcnemar(y, a, b)
    assert r["statistic"] == pytest.approx(9.025) and r["p_value"] == pytest.approx(0.0026635, rel=1e-3)
    assert mcnemar(y, y, y)["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar(y, y[:5], y)


def test_compare_cli_needs_no_tensorflow(study, tmp_path):
    scratch, finetune = study
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from experiments import compare; from experiments.common import run_main\n"
            "try:\n    run_main(compare.main)\nfinally:\n"
            "    assert 'tensorflow' not in sys.modules, 'compare imported TensorFlow'\n",
            f"--runs={scratch},{finetune}",
            f"--out_dir={tmp_path / 'r'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "report: " in p.stdout and "Scratch wins" in p.stdout


def test_compare_cli_refuses_runs_on_different_data_in_one_line(study, tmp_path):
    scratch, _ = study
    other = fake_run(tmp_path, "other", recipes.scratch(epochs=1), [0.5], [True] * 60, source="image folder /x")
    p = subprocess.run(
        [sys.executable, "-m", "experiments.compare", f"--runs={scratch},{other}", f"--out_dir={tmp_path / 'r'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    lines = [l for l in p.stderr.splitlines() if l.startswith("kerasxfer: error:")]
    assert len(lines) == 1 and "cannot be compared: their datasets differ" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_the_report_never_replaces_files_it_did_not_write_nor_writes_into_a_run(study, tmp_path):
    """A folder holding the user's own report.md/summary.json is refused unchanged (``--overwrite`` replaces them);
    a folder the report wrote is rewritten freely; an input run's folder is never written into."""
    import hashlib

    scratch, finetune = study
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    (mine / "curves.png").write_bytes(b"my picture")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.iterdir()}
    with pytest.raises(UserError, match="holds report.md, curves.png, which kerasxfer did not write") as e:
        write_report([str(scratch), str(finetune)], str(mine))
    assert "--overwrite" in str(e.value)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.iterdir()} == before
    write_report([str(scratch), str(finetune)], str(mine), overwrite=True)
    assert (mine / "report.md").read_text() != "my notes"
    write_report([str(scratch), str(finetune)], str(mine))  # ours now: rewritten without --overwrite
    run_files = sorted(os.listdir(scratch))
    with pytest.raises(UserError, match="is a training run's folder"):
        write_report([str(scratch), str(finetune)], str(scratch))
    assert sorted(os.listdir(scratch)) == run_files


def test_a_refused_run_leaves_no_lock_in_the_users_folder(tmp_path):
    folder = tmp_path / "photos-notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty and is not a kerasxfer run"):
        with rundir.locked(str(folder)):
            rundir.inspect_run_dir(str(folder), {"name": "x"})
    assert os.listdir(folder) == ["notes.txt"]


def test_runs_whose_test_files_were_rewritten_in_between_are_refused(study, tmp_path):
    """Same paths and labels, other bytes: the content fingerprint differs, so no paired test; a run written before
    the fingerprint existed (no "content") is still compared."""
    scratch, finetune = study
    for run, content in ((scratch, "a" * 64), (finetune, "b" * 64)):
        data = json.loads((run / rundir.DATA).read_text())
        data["splits"]["test"]["content"] = content
        (run / rundir.DATA).write_text(json.dumps(data))
    with pytest.raises(UserError, match="cannot be compared: their test image contents differ"):
        write_report([str(scratch), str(finetune)], str(tmp_path / "r"))
    data = json.loads((finetune / rundir.DATA).read_text())
    del data["splits"]["test"]["content"]
    (finetune / rundir.DATA).write_text(json.dumps(data))
    write_report([str(scratch), str(finetune)], str(tmp_path / "r"))


@pytest.mark.parametrize("damage", ["truncated metrics", "truncated history", "no predictions", "history a list"])
def test_a_damaged_run_file_is_one_sentence_naming_the_run(study, tmp_path, damage):
    scratch, finetune = study
    if damage == "truncated metrics":
        (finetune / rundir.METRICS).write_text((finetune / rundir.METRICS).read_text()[:40])
    elif damage == "truncated history":
        (finetune / rundir.HISTORY).write_text((finetune / rundir.HISTORY).read_text()[:40])
    elif damage == "no predictions":
        metrics = json.loads((finetune / rundir.METRICS).read_text())
        del metrics["test"]["predictions"]
        (finetune / rundir.METRICS).write_text(json.dumps(metrics))
    else:
        (finetune / rundir.HISTORY).write_text("[1, 2, 3]")
    with pytest.raises(UserError) as e:
        write_report([str(scratch), str(finetune)], str(tmp_path / "r"))
    assert str(finetune) in str(e.value) and "\n" not in str(e.value)

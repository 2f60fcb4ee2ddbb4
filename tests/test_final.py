"""What a user takes home from a study: the final model (``<study>/final``) and pictures of the whole study.

Fast: the final split, the choice of arm, the stopping point, loading a study folder, and a cross-validated
report whose confusion matrix, per-class table, curves and top losses cover every fold.  Slow (CI): a real
cross-validated study on a folder of photos ends with ``final/``, reuses it on a rerun, and ``predict
--run=<study folder>`` uses it.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from kerasxfer import commands, figures, recipes, rundir
from kerasxfer.data.sources import digits_source
from kerasxfer.data.splitting import FINAL_FOLD, fold_split, pool_of
from kerasxfer.errors import UserError
from kerasxfer.final import choose, stopping_point
from kerasxfer.inference import Classifier, study_model
from kerasxfer.records import FinalModel
from kerasxfer.reporting.compare_report import write_report
from kerasxfer.stopping import StopAtEpoch
from tests.test_verdict import _fold_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------- the final split
def test_the_final_split_trains_on_every_labelled_image_and_has_no_test_split():
    src = digits_source(0.2, 0.2, 0)
    pool = pool_of(src)
    final, index = fold_split(src, 5, FINAL_FOLD, 0.2, 0)
    assert len(final.test) == 0 and len(index["test"]) == 0
    # every image of the pool is in train or val, once
    both = np.concatenate([index["train"], index["val"]])
    assert sorted(both.tolist()) == list(range(len(pool)))
    # validation is about val_fraction of each class
    for c in range(10):
        share = np.sum(pool.y[index["val"]] == c) / np.sum(pool.y == c)
        assert 0.1 < share < 0.3
    assert "no fold held out" in final.train.origin and final.test.origin.startswith("none")
    # a fold of the same study still tests its fold: the final fold changes nothing else
    fold1, idx1 = fold_split(src, 5, 1, 0.2, 0)
    assert len(fold1.test) > 0 and len(idx1["train"]) < len(index["train"])


# ----------------------------------------------------------------- which arm
def test_the_final_arm_is_the_verdicts_recommendation_or_the_users_choice():
    assert choose("auto", {"winner": "transfer", "recommended": "transfer"}) == ("transfer", "the verdict's winner")
    arm, why = choose("auto", {"winner": None, "recommended": "scratch"})
    assert arm == "scratch" and "no clear winner" in why and "cheaper" in why
    arm, why = choose("auto", {"winner": None, "recommended": None})
    assert arm is None and "--final=<arm>" in why
    assert choose("scratch", {"winner": "transfer", "recommended": "transfer"})[0] == "scratch"
    arm, why = choose("none", {"winner": "transfer", "recommended": "transfer"})
    assert arm is None and why.startswith("--final=none")


def test_a_final_that_names_no_arm_of_the_study_is_refused_before_training():
    opts = commands.resolve("study", {"dataset": "digits", "final": "transfer-resnet50"})
    with pytest.raises(UserError, match=r"--final=transfer-resnet50 is not one of this study's arms: .*scratch, transfer\.$"):
        commands.study_from(opts.values, opts.given)
    opts = commands.resolve("study", {"dataset": "digits", "final": "Scratch"})
    assert commands.study_from(opts.values, opts.given).final == "scratch"


# ----------------------------------------------------------------- where it stops
def test_training_ends_at_the_epoch_the_folds_chose():
    x, y = np.random.default_rng(0).random((16, 4)), np.arange(16) % 2
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    history: dict = {}
    h = model.fit(x, y, epochs=6, verbose=0, callbacks=[StopAtEpoch(history, 2)])
    assert len(h.history["loss"]) == 2
    assert history["ended_early"]["epoch"] == 2 and "the folds chose" in history["ended_early"]["reason"]


def test_the_stopping_point_is_the_median_of_the_folds_best_epochs(tmp_path):
    class Fold:
        def __init__(self, k, best):
            self.out_dir = str(tmp_path / f"fold{k}")
            os.makedirs(self.out_dir)
            with open(os.path.join(self.out_dir, rundir.HISTORY), "w") as f:
                json.dump({"best": {"epoch": best}}, f)

    assert stopping_point([Fold(1, 7), Fold(2, 3), Fold(3, 12)]) == (7, (7, 3, 12))
    assert stopping_point([Fold(4, 4), Fold(5, 9)])[0] == 4  # the lower median: an epoch a fold chose
    exp = recipes.scratch(epochs=5)
    exp.stop_after_epoch = 6
    with pytest.raises(UserError, match="stop_after_epoch=6 must be an epoch from 1 to the run's 5"):
        exp.validate()


# ----------------------------------------------------------------- a study folder loads its final model
def _model_dir(path, classes=("a", "b")):
    os.makedirs(path)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(len(classes), activation="softmax")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).save(os.path.join(path, "model.keras"))
    with open(os.path.join(path, "data.json"), "w") as f:
        json.dump({"class_names": list(classes), "image_size": 8}, f)


def test_a_study_folder_gives_the_model_it_hands_over(tmp_path):
    study = tmp_path / "runs" / "study" / "flowers"
    _model_dir(str(study / "final"), ("daisy", "rose"))
    _model_dir(str(study / "fold1" / "transfer"))
    (study / "report").mkdir()
    final = {"arm": "transfer", "dir": "somewhere/else/final", "retrained": True, "why": "the verdict's winner"}
    (study / "report" / "summary.json").write_text(json.dumps({"final": final}))
    assert study_model(str(study)) == str(study / "final")  # found beside the report, wherever the study ran
    assert study_model(str(study / "fold1" / "transfer")) == str(study / "fold1" / "transfer")  # a run: itself
    clf = Classifier.from_run(str(study))
    assert clf.class_names == ["daisy", "rose"]
    (study / "report" / "summary.json").write_text(json.dumps({"final": {"arm": None, "dir": None, "why": "--final=none: x."}}))
    with pytest.raises(UserError, match=r"hands over no model \(--final=none: x\): pass one of its run folders"):
        study_model(str(study))


# ----------------------------------------------------------------- pictures of the whole study
def test_a_cross_validated_report_counts_every_pooled_test_image(tmp_path):
    arms = [
        ("scratch", lambda: recipes.scratch(epochs=2), lambda k, n: [i >= 2 * k for i in range(n)]),
        ("transfer", lambda: recipes.finetune(frozen_epochs=1, finetune_epochs=1), lambda k, n: [i != k for i in range(n)]),
    ]
    dirs = _fold_runs(tmp_path, arms)
    for d in dirs:  # each fold's own top losses
        with open(os.path.join(d, rundir.TOP_LOSSES), "wb") as f:
            f.write(figures.confusion_png([[1, 0], [0, 1]], ["a", "b"], os.path.basename(os.path.dirname(d))))
    s = write_report(dirs, str(tmp_path / "r"))
    for run in s["runs"]:
        cm = np.array(run["test_confusion_matrix"])
        assert cm.sum() == run["num_test"] == 60  # every pooled test image, not fold 1's 20
        # the per-class table from the pooled labels and predictions, as scikit-learn computes it
        labels = [i % 3 for i in range(20)] * 3
        right = [arm for arm in arms if arm[0] == run["name"]][0][2]
        preds = [y if ok else (y + 1) % 3 for k in (1, 2, 3) for y, ok in zip(labels[:20], right(k, 20))]
        p, r, f1, support = precision_recall_fscore_support(labels, preds, labels=[0, 1, 2], zero_division=0)
        got = run["per_class"]
        assert [got[c]["support"] for c in "abc"] == support.tolist()
        assert [got[c]["precision"] for c in "abc"] == pytest.approx(p.tolist())
        assert [got[c]["f1"] for c in "abc"] == pytest.approx(f1.tolist())
        assert np.trace(cm) / 60 == pytest.approx(run["test_accuracy"])
    page = (tmp_path / "r" / "report.html").read_text()
    for k in (1, 2, 3):
        assert f"scratch, fold {k}: top losses of the 20 images it tested" in page
    assert page.count("data:image/png;base64,") == 4 + 6  # verdict, curves, lr, confusion; 2 arms x 3 folds
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.index("(verdict.png)") < md.index("## Side by side")  # the verdict's picture comes first
    assert (tmp_path / "r" / "verdict.png").read_bytes().startswith(b"\x89PNG")


def test_the_pooled_arm_keeps_every_folds_history_for_its_curves(tmp_path):
    from kerasxfer.reporting.runs import load_runs

    arms = [("scratch", lambda: recipes.scratch(epochs=3), lambda k, n: [True] * n)]
    arms.append(("transfer", lambda: recipes.finetune(frozen_epochs=1, finetune_epochs=1), lambda k, n: [True] * n))
    runs = load_runs(_fold_runs(tmp_path, arms))
    assert [len(r.fold_histories) for r in runs] == [3, 3]
    assert [len(h.epochs) for h in runs[0].fold_histories] == [3, 3, 3]


def test_the_report_names_the_final_model_with_the_cross_validated_estimate(tmp_path):
    arms = [
        ("scratch", lambda: recipes.scratch(epochs=1), lambda k, n: [i >= 2 * k for i in range(n)]),
        ("transfer", lambda: recipes.finetune(frozen_epochs=1, finetune_epochs=1), lambda k, n: [i != 0 for i in range(n)]),
    ]
    dirs = _fold_runs(tmp_path, arms)
    final = FinalModel(
        arm="transfer",
        dir=str(tmp_path / "final"),
        retrained=True,
        why="the verdict's winner",
        estimate=0.95,
        interval=(0.86, 0.98),
        folds=3,
        num_train=48,
        num_val=12,
        stop_epoch=2,
        fold_best_epochs=(2, 1, 2),
        train_seconds=12.0,
        total_params=1000,
    )
    s = write_report(dirs, str(tmp_path / "r"), final=final)
    assert s["final"]["arm"] == "transfer" and s["final"]["interval"] == [0.86, 0.98]
    md = (tmp_path / "r" / "report.md").read_text()
    section = md[md.index("## The model to deploy") :].split("\n## ")[0]
    assert "**transfer** (the verdict's winner), trained once more on every labelled image (48 to train, 12" in section
    assert "ending at epoch 2, the median of its folds' best epochs (2, 1, 2); 12 s of training" in section
    assert "Expected accuracy: **95.00 %** (95 % interval 86.0–98.0 %), the cross-validation's estimate" in section
    assert "no test split of its own" in section


# ----------------------------------------------------------------- a real study (CI)
@pytest.mark.slow  # make test-ci-slow (CI) runs it: a 3-fold study and its final model, about 2 minutes
def test_a_cross_validated_study_hands_over_its_final_model(tmp_path):
    from PIL import Image

    from tests.test_study_command import run_study, study_args

    photos = tmp_path / "photos"
    rng = np.random.default_rng(1)
    for c, color in enumerate([(220, 40, 40), (40, 220, 40), (40, 40, 220)]):
        (photos / f"class{c}").mkdir(parents=True)
        for i in range(14):
            pixels = (rng.random((40, 40, 3)) * 70 + np.array(color)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(photos / f"class{c}" / f"{i}.jpg")
    args = study_args(photos, "--folds=3", "--final=scratch", "--out_dir=study")
    r = run_study(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    study = tmp_path / "study"
    final = study / "final"
    assert (final / "model.keras").is_file() and rundir.is_finished(str(final))
    metrics = json.loads((final / "metrics.json").read_text())
    data = json.loads((final / "data.json").read_text())
    assert metrics["test"] is None and data["num_test"] == 0 and data["num_train"] + data["num_val"] == 42
    summary = json.loads((study / "report" / "summary.json").read_text())
    f = summary["final"]
    scratch = next(run for run in summary["runs"] if run["name"] == "scratch")
    assert f["arm"] == "scratch" and f["retrained"] and f["estimate"] == scratch["test_accuracy"]
    history = json.loads((final / "history.json").read_text())
    assert history["epochs"][-1]["epoch"] == f["stop_epoch"] == sorted(f["fold_best_epochs"])[1]
    assert "## The model to deploy" in (study / "report" / "report.md").read_text()
    assert "model to deploy: study/final (scratch; expected accuracy" in r.stdout
    # the rerun reuses it; predict on the study folder uses it
    again = run_study(args, tmp_path)
    assert again.returncode == 0 and "study/final (scratch, final model): finished earlier" in again.stderr
    p = subprocess.run(
        [sys.executable, "-m", "experiments.predict", "--run=study", f"--images={photos / 'class1' / '0.jpg'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "study is a study: its model to deploy is study/final (scratch)" in p.stderr
    assert p.stdout.splitlines()[0].startswith(str(photos / "class1" / "0.jpg"))
    # exported on request, beside the model it exports
    e = subprocess.run(
        [sys.executable, "-m", "experiments.predict", "--run=study", "--export=saved_model"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert e.returncode == 0, e.stderr[-2000:]
    assert (final / "export").is_dir() and not (study / "export").exists()

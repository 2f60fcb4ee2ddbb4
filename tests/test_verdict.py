"""The verdict on small, hard and imbalanced sets: no false winners, the control never ranked, baselines,
intervals, did-not-learn flags, order independence, folds pooled — and the statistics checked against
scikit-learn and hand-computed values (no TensorFlow, no training)."""

import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from kerasxfer import recipes, rundir
from kerasxfer.errors import UserError
from kerasxfer.records import Arm
from kerasxfer.reporting import stats, verdict
from kerasxfer.reporting.compare_report import write_report
from tests.test_report import fake_run


def arm(name, preds, kind="scratch", weights=None, backbone=None, seconds=10.0, params=1000, **extra):
    """An arm as the report hands it to the verdict."""
    return Arm(
        name=name,
        model="scratch CNN" if kind == "scratch" else backbone,
        kind=kind,
        backbone=backbone,
        weights=weights,
        predictions=list(preds),
        train_seconds=seconds,
        total_params=params,
        **extra,
    )


def with_errors(labels, wrong, k=2):
    """``labels`` predicted right except at the indices ``wrong``."""
    p = np.array(labels)
    p[list(wrong)] = (p[list(wrong)] + 1) % k
    return p


Y = np.array([i % 2 for i in range(200)])  # 200 balanced test images


# ----------------------------------------------------------------- decisions
def test_a_difference_by_chance_is_no_clear_winner():
    # 6 images only scratch gets wrong, 4 only transfer gets wrong, 20 both: a 1-point difference, p = 0.75
    both = range(0, 20)
    scratch = with_errors(Y, [*both, *range(20, 26)])
    transfer = with_errors(Y, [*both, *range(26, 30)])
    v = verdict.decide([arm("scratch", scratch), arm("transfer", transfer, "transfer", "imagenet", "lite")], Y, ["a", "b"])
    first = v.sentences[0]
    assert first.startswith("**No clear winner**") and "within the noise" in first
    assert "Winner" not in first and "wins" not in first and v.winner is None
    lo, hi = v.main_pair.interval
    assert lo < 0 < hi
    # both wrong alike on 20 images; they disagree on the 6 + 4 the other gets right: 190 of 200 agree
    assert v.main_pair.agreement == pytest.approx(190 / 200)
    # the cheaper arm is named with its cost; the images a 1-point difference would need (McNemar, 80 % power)
    assert "The cheaper arm to train, **scratch** (10 s of training vs 10 s), is the sensible choice." in first
    assert v.recommended == "scratch"  # what the headline recommends is the study's final model (kerasxfer.final)
    need = stats.images_needed(4, 6, 200)
    assert need > 200 and f"about {need:,} test images" in first and "--folds" in first


def test_a_real_difference_wins_with_an_interval_that_excludes_zero():
    scratch = with_errors(Y, range(0, 40))  # 80 %
    transfer = with_errors(Y, range(0, 8))  # 96 %, right wherever scratch is right
    v = verdict.decide([arm("scratch", scratch), arm("transfer", transfer, "transfer", "imagenet", "lite")], Y, ["a", "b"])
    first = v.sentences[0]
    assert first.startswith("**Transfer wins**") and v.winner == "transfer" and v.recommended == "transfer"
    lo, hi = v.main_pair.interval
    assert 0 < lo < 0.16 < hi
    assert f"+16.00 points (95 % interval {100 * lo:+.2f} to {100 * hi:+.2f})" in first
    assert "McNemar p = " in first and "larger than the noise" in first


def test_the_control_is_never_the_winner_even_when_it_scores_highest():
    scratch = with_errors(Y, range(0, 40))
    transfer = with_errors(Y, range(0, 38))
    control = with_errors(Y, range(0, 2))  # far the best
    arms = [
        arm("scratch", scratch),
        arm("transfer", transfer, "transfer", "imagenet", "lite"),
        arm("control", control, "transfer", None, "lite"),
    ]
    v = verdict.decide(arms, Y, ["a", "b"])
    assert v.roles == {"scratch": "contender", "transfer": "contender", "control": "control"}
    assert v.winner != "control" and "control" not in v.sentences[0]
    assert v.sentences[0].startswith("**No clear winner**")
    control_line = next(s for s in v.sentences if "random-backbone control" in s)
    assert control_line.startswith("ImageNet weights hurt") and "the control is not a contender" in control_line
    # a random-backbone run with no pretrained run of its backbone beside it is a contender like any other
    assert verdict.roles([arms[0], arms[2]]) == {"scratch": "contender", "control": "contender"}


def test_order_of_the_runs_never_changes_the_verdict():
    scratch = with_errors(Y, range(0, 30))
    a = with_errors(Y, range(0, 10))
    b = with_errors(Y, [*range(0, 10), 150])
    arms = [
        arm("scratch", scratch),
        arm("lite", a, "transfer", "imagenet", "lite"),
        arm("regnet", b, "transfer", "imagenet", "regnet"),
    ]
    results = [verdict.decide(list(p), Y, ["a", "b"]) for p in itertools.permutations(arms)]
    assert all(r == results[0] for r in results)
    # three contenders: Holm over the three pairs, and lite vs regnet is a 0.5-point tie, so no winner
    first = results[0].sentences[0]
    assert first.startswith("**No clear winner**") and "Holm-corrected for 3 comparisons" in first


def test_ties_and_identical_predictions_are_no_clear_winner():
    same = with_errors(Y, range(0, 30))
    v = verdict.decide([arm("b", same), arm("a", same, "transfer", "imagenet", "lite")], Y, ["a", "b"])
    assert v.winner is None and v.sentences[0].startswith("**No clear winner**")
    assert "score the same here" in v.sentences[0]


def test_an_arm_that_learned_nothing_is_flagged_with_its_cause():
    rng = np.random.default_rng(0)
    y = (rng.random(120) < 0.4).astype(int)  # 61/39-ish, labels independent of anything
    majority = np.zeros_like(y)  # predicted the majority class every time
    guess = np.ones_like(y)  # always the minority class: below the baseline
    v = verdict.decide(
        [
            arm("scratch", guess, final_train_accuracy=1.0, final_train_loss=0.01, optimizer_steps=900, train_counts=[70, 50]),
            arm(
                "transfer",
                majority,
                "transfer",
                "imagenet",
                "lite",
                optimizer_steps=50,
                final_train_loss=0.67,
                train_counts=[70, 50],
            ),
        ],
        y,
        ["cats", "dogs"],
    )
    assert not v.learned["transfer"].learned and not v.learned["scratch"].learned
    lines = v.sentences
    assert "no contender beats the majority-class baseline" in lines[0]
    flag = next(s for s in lines if s.startswith("**transfer did not learn**"))
    assert "only 50 optimizer steps" in flag and "--min_steps=300" in flag
    flag = next(s for s in lines if s.startswith("**scratch did not learn**"))
    assert "fit its training images (100.00 %)" in flag and "labels may not depend" in flag
    base = next(s for s in lines if s.startswith("Majority-class baseline"))
    share = np.mean(y == 0)
    assert f"always predicting 'cats' scores {100 * share:.2f} % accuracy on the 120 test images" in base


def test_above_the_baseline_but_within_the_noise_is_not_called_did_not_learn():
    """The fourth round's case: 70.59 % against a 56.86 % majority baseline on 51 test images (p about 0.19) was
    reported as "scratch did not learn ... the labels may not depend on what the images show"."""
    y = np.array([0] * 29 + [1] * 22)  # 56.86 % majority
    pred = y.copy()
    pred[:8] = 1  # 8 majority images wrong
    pred[29 : 29 + 7] = 0  # 7 minority images wrong: 36 of 51 right = 70.59 %
    v = verdict.decide(
        [
            arm("scratch", pred, optimizer_steps=900, final_train_accuracy=1.0, train_counts=[90, 70]),
            arm("transfer", y, "transfer", "imagenet", "lite"),
        ],
        y,
        ["a", "b"],
    )
    f = v.learned["scratch"]
    assert not f.learned and f.tag == "not distinguishable from the baseline"
    assert f.value == pytest.approx(36 / 51) and 0.05 < f.p_value < 0.5
    line = next(s for s in v.sentences if s.startswith("**scratch is not distinguishable"))
    assert "on these 51 test images" in line and "does not show it learned nothing" in line
    assert "--folds" in line and f"about {f.needed:,} test images" in line and f.needed > 51
    assert not any("did not learn" in s or "labels may not depend" in s for s in v.sentences)


def test_loss_at_the_label_entropy_points_at_the_learning_rate():
    a = arm("x", np.zeros(200, int), optimizer_steps=5000, final_train_loss=0.69, train_counts=[100, 100])
    assert "learning rate" in verdict._cause(a) and "lr-find" in verdict._cause(a)


def test_imbalanced_classes_are_judged_on_balanced_accuracy():
    y = np.array([0] * 90 + [1] * 10)
    majority = np.zeros(100, int)  # 90 % accuracy, 50 % balanced accuracy
    learner = with_errors(y, [*range(0, 12)])  # 88 % accuracy, but recalls 9 in 10 of the rare class
    learner[90:99] = 1
    learner[99] = 0
    v = verdict.decide(
        [arm("scratch", majority), arm("transfer", learner, "transfer", "imagenet", "lite")], y, ["common", "rare"]
    )
    assert v.figure == "balanced accuracy" and v.imbalance == 9.0
    assert not v.learned["scratch"].learned and v.learned["transfer"].learned
    assert any("imbalanced (largest/smallest = 9.00)" in s and "balanced accuracy" in s for s in v.sentences)
    assert v.winner == "transfer" and "balanced accuracy" in v.sentences[0]
    assert "paired permutation test" in v.sentences[0]


def test_fewer_than_two_contenders_is_no_verdict():
    v = verdict.decide(
        [arm("transfer", Y, "transfer", "imagenet", "lite"), arm("control", Y, "transfer", None, "lite")], Y, ["a", "b"]
    )
    assert v.sentences[0].startswith("**No verdict**") and v.winner is None
    assert any("did not help beyond the noise" in s for s in v.sentences)


# ---------------------------------------------------------------- statistics
def test_figures_match_scikit_learn():
    rng = np.random.default_rng(1)
    for k in (2, 3, 7):
        y = rng.integers(0, k, 300)
        y[:5] = 0  # unequal classes
        p = np.where(rng.random(300) < 0.6, y, rng.integers(0, k, 300))
        assert stats.figure_of(y, p, "balanced accuracy") == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)
        assert stats.figure_of(y, p, "accuracy") == pytest.approx(np.mean(p == y), abs=1e-12)
        assert stats.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)


def test_wilson_holm_and_images_needed_match_hand_computed_values():
    lo, hi = stats.wilson(8, 10)  # Wilson (1927); the textbook example's 95 % interval
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert stats.wilson(0, 20)[0] == 0.0 and stats.wilson(20, 20)[1] == 1.0
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5]
    # Connor (1987): q = 0.1, d = 0.05 -> (1.96 * sqrt(0.1) + 0.8416 * sqrt(0.0975))^2 / 0.0025 = 311.59
    assert stats.images_needed(15, 5, 200) == 312
    assert stats.images_needed(5, 5, 200) is None
    assert stats.images_needed(30, 10, 200) < stats.images_needed(15, 5, 200)


def test_permutation_test_and_bootstrap_behave():
    big = with_errors(Y, range(0, 40)), with_errors(Y, range(0, 4))
    assert stats.paired_test(Y, big[1], big[0], "balanced accuracy")["p_value"] < 0.001
    assert stats.paired_test(Y, big[0], big[0], "balanced accuracy")["p_value"] == 1.0
    p = stats.paired_test(Y, with_errors(Y, range(0, 10)), with_errors(Y, range(5, 14)), "balanced accuracy")
    assert p["p_value"] > 0.5
    lo, hi = stats.paired_interval(Y, big[1], big[0])
    assert lo < 0.18 < hi and lo > 0
    assert stats.paired_interval(Y, big[1], big[0]) == (lo, hi)  # seeded


# ------------------------------------------------------------------- report
def test_the_report_recomputes_accuracy_from_the_stored_predictions(tmp_path):
    a = fake_run(tmp_path, "scratch", recipes.scratch(epochs=1), [0.9], [True] * 50 + [False] * 10)
    b = fake_run(
        tmp_path, "finetune", recipes.finetune(frozen_epochs=1, finetune_epochs=1), [0.5, 0.6], [True] * 40 + [False] * 20
    )
    metrics = json.loads((a / rundir.METRICS).read_text())
    metrics["test"]["accuracy"] = 0.99  # edited by hand: the report must not believe it
    (a / rundir.METRICS).write_text(json.dumps(metrics))
    s = write_report([str(a), str(b)], str(tmp_path / "r"))
    assert s["runs"][0]["test_accuracy"] == pytest.approx(50 / 60)
    metrics["test"]["predictions"] = metrics["test"]["predictions"][:-1]
    (a / rundir.METRICS).write_text(json.dumps(metrics))
    with pytest.raises(UserError, match="no valid per-image test predictions"):
        write_report([str(a), str(b)], str(tmp_path / "r2"))


def _fold_runs(root, arms, folds=3, per_fold=20):
    """Fake fold runs ``root/fold<k>/<arm>`` whose fold-k test split has ``per_fold`` images."""
    dirs = []
    for k in range(1, folds + 1):
        for name, exp, correct in arms:
            out = fake_run(root / f"fold{k}", name, exp(), [0.8] * exp().total_epochs, correct(k, per_fold), test_keys=f"fold{k}")
            data = json.loads((out / rundir.DATA).read_text())
            data.update(folds=folds, fold=k)
            (out / rundir.DATA).write_text(json.dumps(data))
            dirs.append(str(out))
    return dirs


def test_fold_runs_are_pooled_into_out_of_fold_predictions(tmp_path):
    arms = [
        ("scratch", lambda: recipes.scratch(epochs=1), lambda k, n: [i >= 2 * k for i in range(n)]),
        ("transfer", lambda: recipes.finetune(frozen_epochs=1, finetune_epochs=1), lambda k, n: [i != 0 for i in range(n)]),
    ]
    dirs = _fold_runs(tmp_path, arms)
    s = write_report(dirs, str(tmp_path / "r"))
    assert [r["name"] for r in s["runs"]] == ["scratch", "transfer"] and len(s["runs"]) == 2
    assert s["verdict"]["num_images"] == 60 and s["comparisons"][0]["mcnemar"]["n"] == 60
    assert s["runs"][0]["test_accuracy"] == pytest.approx((18 + 16 + 14) / 60)
    assert [f["test_accuracy"] for f in s["runs"][0]["folds"]] == pytest.approx([0.9, 0.8, 0.7])
    assert "out-of-fold: every image tested once over 3 folds" in s["summary"][0]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Folds" in md and "| scratch | 90.00 % | 80.00 % | 70.00 % |" in md
    # a missing fold, or a fold run among single-split runs, is refused in one sentence
    with pytest.raises(UserError, match="lacks fold\\(s\\) 3 of 3"):
        write_report([d for d in dirs if "fold3/transfer" not in d], str(tmp_path / "r2"))
    plain = fake_run(tmp_path, "plain", recipes.scratch(epochs=1), [0.5], [True] * 20)
    with pytest.raises(UserError, match="is not a fold of a cross-validated study"):
        write_report([dirs[0], str(plain)], str(tmp_path / "r3"))


def test_the_cheaper_arm_is_named_with_its_training_time_and_the_smaller_model_beside_it():
    scratch = with_errors(Y, range(0, 20))
    transfer = with_errors(Y, range(1, 22))
    v = verdict.decide(
        [
            arm("scratch", scratch, seconds=77.0, params=289_642),
            arm("transfer", transfer, "transfer", "imagenet", "lite", seconds=61.0, params=3_425_834),
        ],
        Y,
        ["a", "b"],
    )
    first = v.sentences[0]
    assert (
        "The cheaper arm to train, **transfer** (61 s of training vs 77 s), is the sensible choice; **scratch** is "
        "the smaller model (289,642 parameters vs 3,425,834)" in first
    )


def test_several_transfer_arms_say_which_backbone_served_best_with_corrected_p_values():
    scratch = with_errors(Y, range(0, 60))  # 70 %
    lite = with_errors(Y, range(0, 10))  # 95 %
    resnet = with_errors(Y, range(0, 40))  # 80 %
    close = with_errors(Y, range(0, 12))  # 94 %: within the noise of lite
    arms = [
        arm("scratch", scratch),
        arm("transfer-efficientnet_lite0", lite, "transfer", "imagenet", "efficientnet_lite0"),
        arm("transfer-resnet50", resnet, "transfer", "imagenet", "resnet50"),
    ]
    v = verdict.decide(arms, Y, ["a", "b"])
    assert v.sentences[0].startswith("**Transfer wins**: **transfer-efficientnet_lite0**")
    assert "Holm-corrected for 3 comparisons" in v.sentences[0]
    best = v.best_backbone
    assert best.startswith("Of the 2 transfer arms, efficientnet_lite0 served best") and "a lead beyond the noise" in best
    assert "Holm-corrected for 3 comparisons" in best
    arms[2] = arm("transfer-resnet50", close, "transfer", "imagenet", "resnet50")
    near = verdict.decide(arms, Y, ["a", "b"]).best_backbone
    assert "within the noise, so either backbone would do" in near
    assert verdict.decide(arms[:2], Y, ["a", "b"]).best_backbone is None  # one transfer arm: no such sentence

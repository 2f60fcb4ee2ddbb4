"""Small sets: stratified K-fold splits of the labelled pool, enough optimizer steps, balanced class weights."""

import os

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from kerasxfer import recipes
from kerasxfer.config import DataConfig
from kerasxfer.data import splitting
from kerasxfer.data.split import SourceSplit, Split
from kerasxfer.errors import UserError
from kerasxfer.optim_config import class_weights
from kerasxfer.studies import StudyConfig


def _src(n_per_class=(30, 12, 7)):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)]).astype(np.int32)
    keys = [f"c{c}/{i}.png" for c, n in enumerate(n_per_class) for i in range(n)]
    whole = Split(np.array(keys, dtype=object), y, keys, "test pool")
    train, val, test = splitting.split_three(whole, 0.2, 0.2, 0, ["a", "b", "c"])
    return SourceSplit(train, val, test, ["a", "b", "c"], decode=lambda x: x, description="pool")


@pytest.mark.parametrize("folds", [2, 5])
def test_folds_partition_the_pool_and_keep_splits_disjoint_and_stratified(folds):
    src = _src()
    pool = splitting.pool_of(src)
    tested = []
    for k in range(1, folds + 1):
        fold, index = splitting.fold_split(src, folds, k, 0.2, seed=3)
        parts = [set(fold.train.keys), set(fold.val.keys), set(fold.test.keys)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert set().union(*parts) == set(pool.keys)  # nothing lost
        assert [pool.keys[i] for i in index["test"]] == fold.test.keys  # indices point at the same examples
        for c, n in enumerate((30, 12, 7)):  # each class in about its share of every test fold
            assert abs(int(np.sum(fold.test.y == c)) - n / folds) < 1
        assert (fold.info["folds"], fold.info["fold"]) == (folds, k)
        tested += fold.test.keys
    assert sorted(tested) == sorted(pool.keys)  # every image tested exactly once


def test_fold_assignment_depends_on_keys_and_seed_only():
    src = _src()
    pool = splitting.pool_of(src)
    a = splitting.fold_assign(pool.y, pool.keys, 5, 0)
    order = np.random.default_rng(0).permutation(len(pool.y))
    b = splitting.fold_assign(pool.y[order], [pool.keys[i] for i in order], 5, 0)
    assert dict(zip(pool.keys, a)) == {pool.keys[i]: f for i, f in zip(order, b)}
    assert not np.array_equal(a, splitting.fold_assign(pool.y, pool.keys, 5, 1))


def test_too_small_a_class_for_the_folds_is_one_sentence():
    # class c has 3 images: fold 1 of 2 tests 2 of them, which leaves 1 to train and validate on
    with pytest.raises(UserError, match="class\\(es\\) 'c' have too few images for 2 folds"):
        splitting.fold_split(_src((30, 12, 3)), 2, 1, 0.2, 0)


def test_more_folds_than_the_images_allow_is_one_sentence_with_a_number_that_works():
    """--folds=10 on 9 images named an empty class list."""
    with pytest.raises(
        UserError,
        match=r"9 labelled images are too few for 10 folds \(fold 1 would test \d+ of "
        r"them\): pass --folds=2 or fewer",
    ):
        splitting.fold_split(_src((5, 4)), 10, 1, 0.2, 0)


@pytest.mark.parametrize(
    "folds, fold, message", [(1, 0, "from 2 to 20"), (21, 1, "from 2 to 20"), (5, 6, "not one of the 5 folds")]
)
def test_fold_fields_are_checked(folds, fold, message):
    with pytest.raises(UserError, match=message):
        DataConfig(folds=folds, fold=fold).validate()


def test_min_steps_raises_short_phases_and_records_itself():
    exp = recipes.finetune(frozen_epochs=10, finetune_epochs=8, frozen_head="epochs")
    exp.data.batch_size = 32
    solved = recipes.finetune(frozen_epochs=10, finetune_epochs=8)
    assert [p.epochs for p in solved.with_min_steps(144, 300).phases] == [1, 60]  # a solved phase takes no step
    raised = exp.with_min_steps(144, 300)  # 5 steps per epoch: 10 epochs are 50 steps
    assert [p.epochs for p in raised.phases] == [60, 60] and raised.min_steps == 300
    assert [p.epochs for p in exp.phases] == [10, 8]  # the original is untouched
    big = exp.with_min_steps(1077, 300)  # 34 steps per epoch: 10 x 34 = 340 is enough, 8 x 34 = 272 is not
    assert [p.epochs for p in big.phases] == [10, 9]
    exp.phases[1].epochs = 0
    assert exp.with_min_steps(144, 300).phases[1].epochs == 0  # a phase of 0 epochs stays off


def test_study_chooses_folds_from_the_pool_size():
    base = dict(out_dir="runs/x", scratch=recipes.scratch(), transfer=recipes.finetune())
    small = StudyConfig(**base)
    assert "5 folds over all 230 labelled images (auto" in small.resolve_folds(230, own_test=False)
    assert small.folds == 5 and len(small.arms()) == 20  # scratch, transfer, the control and its reference
    assert {e.out_dir for _, e in small.arms()} >= {
        "runs/x/fold1/scratch",
        "runs/x/fold5/control",
        "runs/x/fold5/control-pretrained",
    }
    exhaustive = StudyConfig(**base, exhaustive=True)
    exhaustive.resolve_folds(230, own_test=False)
    assert len(exhaustive.arms()) == 15  # the control is a whole second fine-tune
    large = StudyConfig(**base)
    assert "one train/val/test split (auto: one split from 1,000" in large.resolve_folds(1797, own_test=False)
    assert large.folds == 1
    own = StudyConfig(**base)
    assert "their own test split" in own.resolve_folds(200, own_test=True) and own.folds == 1
    asked = StudyConfig(**base, folds=3)
    assert "--folds=3" in asked.resolve_folds(5000, own_test=True) and asked.folds == 3


def test_balanced_class_weights_match_scikit_learn():
    y = np.array([0] * 61 + [1] * 39 + [2] * 5)
    ours = class_weights("balanced", y, 3)
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert [ours[c] for c in range(3)] == pytest.approx(ref)
    assert class_weights("none", y, 3) is None


def test_balanced_class_weight_reaches_the_training_loss(tmp_path):
    """The same run with and without --class_weight=balanced on a 30/6 folder: the weighted loss differs."""
    import json

    from kerasxfer.training import run_experiment
    from tests.conftest import _write_image

    for c, (n, color) in enumerate(((30, (200, 30, 30)), (6, (30, 30, 200)))):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(n):
            _write_image(str(tmp_path / "data" / f"c{c}" / f"{i}.png"), 16, color)
    losses = {}
    for mode in ("none", "balanced"):
        exp = recipes.scratch(
            epochs=1,
            widths=(4,),
            data=DataConfig(dataset=str(tmp_path / "data"), image_size=16, batch_size=8),
            out_dir=str(tmp_path / mode),
            class_weight=mode,
        )
        run_experiment(exp)
        losses[mode] = json.loads((tmp_path / mode / "history.json").read_text())["epochs"][0]["loss"]
        assert json.loads((tmp_path / mode / "config.json").read_text())["optim"]["class_weight"] == mode
    assert losses["none"] != pytest.approx(losses["balanced"], rel=1e-3)


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_two_fold_study_in_process_tests_every_image_once(tmp_path):
    """run_study with folds=2 on 24 images, two image sizes: each arm's two test folds are the whole pool."""
    import json

    from kerasxfer.studies import run_study
    from tests.conftest import _write_image

    for c, color in enumerate(((200, 40, 40), (40, 40, 200))):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            _write_image(str(tmp_path / "data" / f"c{c}" / f"{i}.png"), 20, tuple(v + 3 * i for v in color))
    data = lambda size: DataConfig(dataset=str(tmp_path / "data"), image_size=size, batch_size=8)  # noqa: E731
    cfg = StudyConfig(
        out_dir=str(tmp_path / "study"),
        scratch=recipes.scratch(epochs=1, widths=(4,), data=data(16)),
        transfer=recipes.finetune(weights=None, frozen_epochs=1, finetune_epochs=1, data=data(32)),
        folds=2,
        min_steps=0,
    )
    summary = run_study(cfg)
    assert summary["verdict"]["num_images"] == 24 and summary["verdict"]["folds"] == 2
    for arm in ("scratch", "transfer"):
        tests = []
        for k in (1, 2):
            d = json.loads((tmp_path / "study" / f"fold{k}" / arm / "data.json").read_text())
            assert (d["folds"], d["fold"], d["pool_size"]) == (2, k, 24)
            tests.append(d["splits"]["test"]["count"])
            assert d["num_train"] + d["num_val"] + d["num_test"] == 24
        assert tests == [12, 12]
    run = next(r for r in summary["runs"] if r["name"] == "scratch")
    assert [f["fold"] for f in run["folds"]] == [1, 2] and run["num_test"] == 24


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_a_study_on_labels_independent_of_the_pixels_flags_the_arms_that_did_not_learn(tmp_path):
    """A 2-class folder of noise images, labels drawn at random (60/40): no arm beats the majority baseline,
    the report says so, and report.md and summary.json carry the baseline."""
    import json

    from PIL import Image

    from kerasxfer.studies import run_study

    rng = np.random.default_rng(5)
    for c, n in enumerate((60, 40)):
        (tmp_path / "noise" / f"c{c}").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "noise" / f"c{c}" / f"{i}.png")
    data = lambda size: DataConfig(dataset=str(tmp_path / "noise"), image_size=size, batch_size=16)  # noqa: E731
    cfg = StudyConfig(
        out_dir=str(tmp_path / "study"),
        scratch=recipes.scratch(epochs=3, widths=(8,), data=data(16)),
        transfer=recipes.finetune(weights=None, frozen_epochs=2, finetune_epochs=1, data=data(32)),
        folds=1,
        min_steps=0,
    )
    summary = run_study(cfg)
    learned = summary["verdict"]["learned"]
    assert set(learned) == {"scratch", "transfer"} and not any(v["learned"] for v in learned.values())
    assert summary["summary"][0].startswith("**No clear winner**: no contender beats the majority-class baseline")
    tag = learned["scratch"]["tag"]  # at or below the baseline: did not learn; above it by noise: undecided
    opening = "**scratch did not learn**" if tag == "did not learn" else "**scratch is not distinguishable from"
    assert any(s.startswith(opening) for s in summary["summary"])
    md = (tmp_path / "study" / "report" / "report.md").read_text()
    assert "| majority class (c0) | baseline |" in md and f"contender, **{tag}**" in md
    saved = json.loads((tmp_path / "study" / "report" / "summary.json").read_text())
    assert saved["baseline"]["class_name"] == "c0" and saved["baseline"]["accuracy"] == pytest.approx(
        summary["verdict"]["baseline"]["accuracy"]
    )


def test_a_study_with_several_backbones_trains_one_transfer_arm_each_and_one_control():
    import copy

    transfer = recipes.finetune(backbone="efficientnet_lite0")
    other = copy.deepcopy(transfer)
    other.model.backbone = "resnet50"
    cfg = StudyConfig(out_dir="runs/s", scratch=recipes.scratch(), transfer=transfer, more_transfers=(other,), folds=1).validate()
    labels = {label: exp.model.backbone if exp.model.uses_backbone else None for label, exp in cfg.arms()}
    assert labels == {
        "scratch": None,
        "transfer-efficientnet_lite0": "efficientnet_lite0",
        "transfer-resnet50": "resnet50",
        "control-efficientnet_lite0": "efficientnet_lite0",
        "control-efficientnet_lite0-pretrained": "efficientnet_lite0",
    }
    assert [os.path.basename(e.out_dir) for _, e in cfg.arms()] == list(labels)
    control = dict(cfg.arms())["control-efficientnet_lite0"]
    assert control.model.weights is None and transfer.model.weights == "imagenet"
    with pytest.raises(UserError, match="names a backbone twice"):
        StudyConfig(
            out_dir="runs/s", scratch=recipes.scratch(), transfer=transfer, more_transfers=(copy.deepcopy(transfer),)
        ).validate()


def test_a_split_missing_a_class_is_said_and_recorded(caplog):
    from kerasxfer.data.pipeline import Decoded, splits_from

    def part(labels):
        y = np.asarray(labels, np.int32)
        return Split(np.zeros((len(y), 8, 8, 3), np.uint8), y, [str(i) for i in range(len(y))], "here")

    train, val, test = part([0, 1, 2] * 4), part([0, 1, 0, 1]), part([0, 1, 2])
    src = SourceSplit(train, val, test, ["a", "b", "c"], decode=None, description="three classes")
    images = {k: p.x for k, p in (("train", train), ("val", val), ("test", test))}
    with caplog.at_level("WARNING", logger="kerasxfer"):
        d = splits_from(Decoded(DataConfig(image_size=8, batch_size=4), src, images), seed=0)
    assert d.info["classes_missing"] == {"val": ["c"]}
    assert "the val split holds no image of 1 class(es) (c)" in caplog.text


def test_the_test_fingerprint_follows_the_files_bytes(tmp_path):
    from kerasxfer.data.pipeline import content_fingerprint

    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(bytes([i]) * 10)
    part = Split(np.array([str(tmp_path / f"{i}.png") for i in range(3)]), np.zeros(3, np.int32), ["0", "1", "2"], "")
    before = content_fingerprint(part)
    assert content_fingerprint(part) == before
    (tmp_path / "1.png").write_bytes(b"rewritten in place")  # same path, other image
    assert content_fingerprint(part) != before


@pytest.mark.parametrize("content", ["{}", "[1, 2]", "not json", '{"pretrained_on": "x", "num_train": "many"}'])
def test_a_damaged_backbone_json_names_the_weights_file_instead_of_crashing(tmp_path, content):
    from kerasxfer.provenance import weights_source

    (tmp_path / "backbone.weights.h5").write_bytes(b"")
    (tmp_path / "backbone.json").write_text(content)
    exp = recipes.finetune(weights=str(tmp_path / "backbone.weights.h5"))
    assert weights_source(exp) == f"file {tmp_path / 'backbone.weights.h5'}"

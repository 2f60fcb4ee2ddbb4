"""Typed run records: an old run directory still loads, a damaged one is refused in one sentence, and the
records write the JSON the report files hold (no TensorFlow, no training)."""

import json

import pytest

from kerasxfer import recipes, rundir
from kerasxfer.errors import UserError
from kerasxfer.records import Evaluation, Learned, Pair, Split, field_of, to_json
from kerasxfer.reporting.runs import load_run
from tests.test_report import fake_run


def _edit(path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def test_a_run_reads_by_attribute_with_timings_beside_its_epochs(tmp_path):
    out = fake_run(
        tmp_path,
        "finetune",
        recipes.finetune(frozen_epochs=2, finetune_epochs=3, weights="none", frozen_head="epochs"),
        [0.5, 0.6, 0.7, 0.9, 0.8],
        [True] * 8 + [False] * 4,
    )
    run = load_run(str(out))
    assert [e.val_accuracy for e in run.history.epochs] == [0.5, 0.6, 0.7, 0.9, 0.8]
    assert run.history.best.epoch == 4 and run.history.train_seconds == 10.0
    assert all(e.seconds == 1.0 and e.images_per_sec == 100.0 for e in run.history.epochs)
    assert run.history.phases[0].seconds == pytest.approx(5.0) and run.setup.kind == "transfer"
    # the test figures are recomputed from the 12 stored predictions (8 right), not read from metrics.json
    assert run.test.accuracy == pytest.approx(8 / 12) and sum(map(sum, run.test.confusion_matrix)) == 12
    assert run.data.test_split.count == 12 and run.data.test_split.content is None


def test_a_run_written_before_timings_and_schedules_still_loads(tmp_path):
    out = fake_run(tmp_path, "scratch", recipes.scratch(epochs=2), [0.4, 0.5], [True] * 6)
    (out / rundir.TIMINGS).unlink()
    _edit(out / rundir.CONFIG, lambda c: (c.pop("min_steps", None), c.pop("optim", None)))
    run = load_run(str(out))
    assert run.history.train_seconds is None and run.history.epochs[0].seconds is None
    assert run.history.phases[0].schedule is None and run.setup.min_steps == 0 and run.setup.optim == {}


@pytest.mark.parametrize(
    "damage",
    [
        lambda h: h["epochs"][0].pop("val_loss"),
        lambda h: h["best"].pop("epoch"),
        lambda h: h["phases"][0].pop("trainable"),
        lambda h: h.update(epochs="many"),
    ],
)
def test_a_history_lacking_what_kerasxfer_writes_is_refused_in_one_sentence(tmp_path, damage):
    out = fake_run(tmp_path, "scratch", recipes.scratch(epochs=2), [0.4, 0.5], [True] * 6)
    _edit(out / rundir.HISTORY, damage)
    with pytest.raises(UserError) as e:
        load_run(str(out))
    msg = str(e.value)
    assert "is damaged" in msg and "--overwrite" in msg and msg.endswith(".") and "\n" not in msg


def test_records_write_their_json_names_and_leave_out_what_is_not_set():
    assert to_json(Split(count=3, origin="fold 1 of 5", fingerprint="ab")) == {
        "count": 3,
        "from": "fold 1 of 5",
        "fingerprint": "ab",
    }
    assert to_json(Learned(learned=True, value=0.9, baseline=0.5, p_value=0.01)) == {
        "learned": True,
        "value": 0.9,
        "baseline": 0.5,
        "p_value": 0.01,
    }
    pair = Pair(
        a="x",
        b="y",
        figure="accuracy",
        a_value=0.9,
        b_value=0.8,
        difference=0.1,
        difference_points=10.0,
        interval=(0.02, 0.18),
        test={},
        p_value=0.04,
        mcnemar={},
    )
    flipped = pair.oriented("y")
    assert (flipped.a, flipped.difference, flipped.interval) == ("y", -0.1, (-0.18, -0.02))
    assert pair.oriented("x") is pair and "adjusted_p" not in to_json(pair)
    assert json.loads(json.dumps(to_json(Evaluation(labels=[0], predictions=[1], loss=0.5))))["labels"] == [0]


def test_one_field_name_per_figure():
    assert field_of("accuracy") == "accuracy" and field_of("balanced accuracy") == "balanced_accuracy"
    with pytest.raises(ValueError):
        field_of("balanced_accuracy")

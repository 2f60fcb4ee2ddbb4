"""A run whose phases are the first phases of another run is written from it, and is the run it would have been."""

import dataclasses
import json

import pytest

from kerasxfer.config import DataConfig, Experiment, ModelConfig, PhaseConfig

SMALL = dict(dataset="digits", val_fraction=0.3, test_fraction=0.3, image_size=32, batch_size=32, split_seed=0)
FROZEN = PhaseConfig("frozen", 3, 1e-3, "head", patience=1, min_epochs=1)


def _exp(out, phases):
    return Experiment(
        name="transfer",
        out_dir=str(out),
        data=DataConfig(**SMALL),
        model=ModelConfig(kind="transfer", backbone="efficientnet_lite0", weights="imagenet", dropout=0.3),
        phases=phases,
    )


def _transfer(out):
    return _exp(out, [FROZEN, PhaseConfig("unfrozen", 1, 2e-4, "stages:2")])


def _reference(out):
    return _exp(out, [FROZEN])


def _read(path, name):
    return json.loads((path / name).read_text())


def test_a_prefix_is_every_setting_equal_and_the_leading_phases():
    from kerasxfer.forks import same_prefix

    assert same_prefix(_transfer("a"), _reference("b"))
    assert not same_prefix(_reference("b"), _transfer("a"))  # the longer run is never written from the shorter
    assert not same_prefix(_transfer("a"), _transfer("b"))  # nothing would be left to train
    other = _reference("b")
    other.model.weights = None  # the random-backbone control is another run
    assert not same_prefix(_transfer("a"), other)
    assert not same_prefix(_transfer("a"), dataclasses.replace(_reference("b"), seed=1))
    assert not same_prefix(_transfer("a"), _exp("b", [dataclasses.replace(FROZEN, lr=2e-3)]))


@pytest.mark.slow  # make test-ci-slow (CI) runs it: a whole training run, too long for make test's 10 minutes
def test_a_forked_run_equals_the_run_trained_on_its_own_and_leaves_its_source_unchanged(tmp_path):
    """The exactness of the shortcut: the forked control-pretrained has the history, best checkpoint and test
    predictions of the same run trained by itself, and the transfer run it came from is the run trained without
    the fork."""
    from kerasxfer.data import load_data
    from kerasxfer.forks import ForkAfterPhase, fork
    from kerasxfer.training import run_experiment

    src, alone, plain = _transfer(tmp_path / "src"), _reference(tmp_path / "alone"), _transfer(tmp_path / "plain")
    forked = _reference(tmp_path / "forked")
    data = load_data(src.data, src.seed)
    callback = ForkAfterPhase(src.out_dir, [(forked, data)])
    with_fork = run_experiment(src, data=data, callbacks=[callback])
    assert callback.forked == [forked.out_dir]
    assert _read(tmp_path / "forked", "kerasxfer-run.json")["state"] == "finished"
    own = run_experiment(alone)
    assert _read(tmp_path / "forked", "history.json") == _read(tmp_path / "alone", "history.json")
    assert _read(tmp_path / "forked", "config.json") == {**_read(tmp_path / "alone", "config.json"), "out_dir": forked.out_dir}
    got = _read(tmp_path / "forked", "metrics.json")
    for split in ("val", "test"):
        assert got[split]["predictions"] == own[split]["predictions"]
        assert got[split]["accuracy"] == own[split]["accuracy"]
    assert got["best_epoch"] == own["best_epoch"] and got["best_phase"] == "frozen"
    without = run_experiment(plain)
    assert _read(tmp_path / "src", "history.json") == _read(tmp_path / "plain", "history.json")
    assert with_fork["test"]["predictions"] == without["test"]["predictions"]
    # A folder that holds a run of other settings is not overwritten: that run refuses or trains on its own.
    before = (tmp_path / "alone" / "metrics.json").read_bytes()
    changed = _exp(tmp_path / "alone", [dataclasses.replace(FROZEN, lr=5e-3)])
    assert not fork(src.out_dir, changed, data)
    assert (tmp_path / "alone" / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("exhaustive,expected", [(False, {1: [3]}), (True, {})])
def test_a_study_forks_each_folds_reference_from_its_transfer_run(tmp_path, exhaustive, expected):
    from kerasxfer.studies import StudyConfig, _forks

    scratch = Experiment(
        name="scratch",
        out_dir=str(tmp_path / "s"),
        data=DataConfig(**SMALL),
        model=ModelConfig(kind="scratch"),
        phases=[PhaseConfig("scratch", 2, 1e-3, "all")],
    )
    cfg = StudyConfig(out_dir=str(tmp_path), scratch=scratch, transfer=_transfer(tmp_path / "t"), exhaustive=exhaustive)
    series = [(label, exp, 100) for label, exp in cfg.arms()]
    assert [label for label, _, _ in series][:4] == (
        ["scratch", "transfer", "control", "control-pretrained"][:4] if not exhaustive else ["scratch", "transfer", "control"]
    )
    assert _forks(series) == expected

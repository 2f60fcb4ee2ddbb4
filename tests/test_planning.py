"""A study within --minutes: the plan gives up folds, then minimum steps, and says so (no training here)."""

import pytest

from kerasxfer import commands
from kerasxfer.errors import UserError
from kerasxfer.planning import FLOOR_STEPS, Costs, estimate, fit_plan

COSTS = Costs(scratch_step=0.1, unfrozen_step=0.4, frozen_epoch=0.2, overhead=10.0)


def _plan(minutes, folds=5):
    return fit_plan(COSTS, minutes, folds, lambda k: 150 if k > 1 else 140, 32, 10, 8, 300, 100, 2)


def test_estimate_adds_every_run_of_every_fold():
    # per fold: scratch 60 epochs x 5 steps x 0.1 = 30 s; frozen 120 x 0.2 = 24 s; unfrozen 20 x 5 x 0.4 = 40 s;
    # the random control's frozen phase 24 s (control-pretrained is the transfer run's own, forked); 4 runs'
    # overheads 40 s
    assert estimate(COSTS, 1, 150, 32, 10, 8, 300, 100, 2) == pytest.approx(30 + 24 + 40 + 24 + 40)
    assert estimate(COSTS, 5, 150, 32, 10, 8, 300, 100, 2) == pytest.approx(5 * 158)


def test_a_limit_the_plan_fits_gives_up_nothing():
    folds, min_steps, ft, seconds, said = _plan(30)
    assert (folds, min_steps, ft) == (5, 300, 100) and seconds <= 30 * 60
    assert "nothing was given up" in said[0]


def test_a_tight_limit_gives_up_folds_first_then_steps_and_says_so():
    folds, min_steps, ft, seconds, said = _plan(10)  # 5 folds: about 13 min; 3 folds: about 8
    assert (folds, min_steps, ft) == (3, 300, 100) and seconds <= 600
    assert "3 folds instead of 5" in said[0]
    folds, min_steps, ft, seconds, said = _plan(4)  # 2 folds are still 5 min: the unfrozen, then scratch steps
    assert folds == 2 and ft == FLOOR_STEPS and FLOOR_STEPS < min_steps < 300 and seconds <= 240
    assert "the unfrozen phase trains at least 60" in said[0] and "every other phase" in said[0]


def test_an_impossible_limit_keeps_the_smallest_plan_and_says_how_long_it_takes():
    folds, min_steps, ft, seconds, said = _plan(0.5)
    assert (folds, min_steps, ft) == (2, FLOOR_STEPS, FLOOR_STEPS)
    assert seconds > 30 and "give it more minutes" in said[0]


@pytest.mark.parametrize(
    "given,message",
    [
        ({"minutes": -1.0}, "must be a positive number of minutes"),
        ({"minutes": 10.0, "exhaustive": True}, "cannot be fitted into --minutes"),
    ],
)
def test_bad_limits_are_one_sentence(given, message):
    with pytest.raises(UserError, match=message):
        commands.study_from(commands.resolve("study", {"dataset": "digits", **given}).values)


@pytest.mark.slow  # make test-ci-slow (CI) runs it: whole runs, too long for make test's 10 minutes
def test_calibration_times_the_studys_own_models():
    """On this machine, with the study's own scratch CNN and transfer arm (small images: a few seconds)."""
    from kerasxfer import recipes
    from kerasxfer.config import DataConfig
    from kerasxfer.planning import calibrate

    data = DataConfig(image_size=32, batch_size=8)
    costs = calibrate(
        recipes.scratch(data=data, widths=(8,)), recipes.finetune(backbone="regnetx002", data=data), num_classes=3, steps=2
    )
    assert 0 < costs.scratch_step < 5 and 0 < costs.unfrozen_step < 5 and 0 < costs.frozen_epoch < 5


@pytest.mark.slow  # make test-ci-slow: a real calibration (a few seconds of training)
def test_a_study_planned_by_minutes_continues_under_its_plan_on_disk(tmp_path, caplog):
    """Fifth round: a --minutes study killed in its first run was re-planned on rerun (the machine's load had
    changed: min_steps 192 -> 300) and its own runs refused as 'made with other settings'. The plan is kept in
    plan.json and the same study continues under it; other settings or --overwrite plan again."""
    import json
    import logging

    from kerasxfer.data import SharedSources
    from kerasxfer.planning import PLAN_FILE, fit_minutes

    def study(**more):
        flags = {"dataset": "digits", "minutes": 3.0, "image_size": 32, "scratch_image_size": 16, "widths": "8"}
        flags.update(backbone="regnetx002", weights="none", out_dir=str(tmp_path / "s"), **more)
        cfg = commands.study_from(commands.resolve("study", flags).values)
        return cfg, SharedSources(cfg.split_seed)

    cfg, sources = study()
    fit_minutes(cfg, sources, 10)
    record = json.loads((tmp_path / "s" / PLAN_FILE).read_text())
    assert record["plan"]["min_steps"] == cfg.min_steps and record["costs"]["scratch_step"] > 0
    record["plan"]["min_steps"] = cfg.min_steps + 7  # what a busier machine would have planned
    (tmp_path / "s" / PLAN_FILE).write_text(json.dumps(record))
    cfg, sources = study()
    with caplog.at_level(logging.INFO, logger="kerasxfer"):
        fit_minutes(cfg, sources, 10)
    assert cfg.min_steps == record["plan"]["min_steps"]  # the plan on disk, not a new calibration
    assert "continuing under the plan this study was started with" in caplog.text
    caplog.clear()
    cfg, sources = study(minutes=4.0)  # another limit: planned again
    with caplog.at_level(logging.INFO, logger="kerasxfer"):
        fit_minutes(cfg, sources, 10)
    assert "planned for other settings or data: planning again" in caplog.text
    cfg, sources = study(minutes=4.0)
    fit_minutes(cfg, sources, 10, overwrite=True)
    assert json.loads((tmp_path / "s" / PLAN_FILE).read_text())["request"]["minutes"] == 4.0

"""The Python API (kerasxfer.study/finetune/scratch/compare/load): the command line's defaults and names."""

import json
import logging
import os
import subprocess
import sys

import pytest

import kerasxfer
from kerasxfer import commands
from kerasxfer.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli_defaults(command: str) -> dict:
    """The defaults of the flags ``python -m experiments.<command>`` defines itself (through experiments.common)."""
    code = f"""
import json, experiments.{command}
from absl import flags
from experiments import common
F = flags.FLAGS
own = {{f.name for m in ("experiments.{command}", "experiments.common") for f in F.get_key_flags_for_module(m)}}
print(json.dumps({{n: F[n].default for n in own}}))
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", commands.COMMANDS)
def test_the_command_line_defaults_are_the_librarys_for_every_option(command):
    """Every option of the library is a flag of the command, with the same default, and no flag is extra."""
    cli = _cli_defaults(command)
    library = kerasxfer.options_of(command)
    assert set(cli) == set(library), set(cli) ^ set(library)
    assert {n: cli[n] for n in cli if cli[n] != library[n]} == {}


@pytest.mark.parametrize("command", commands.TOOLS)
def test_the_tools_flags_are_their_options_in_the_one_table(command):
    """predict, compare, repeat, lr_find and bench define their flags from the options table too."""
    cli, table = _cli_defaults(command), kerasxfer.options_of(command)
    assert {n: cli.get(n, "no flag") for n in table if cli.get(n, "no flag") != table[n]} == {}
    if command != "lr_find":  # lr_find also takes every training flag of scratch and finetune
        assert set(cli) == set(table), set(cli) ^ set(table)
    assert all(spec.help.strip() for spec in commands.options_of(command).values())


def test_compare_from_python_writes_where_the_command_line_does(tmp_path, monkeypatch):
    from kerasxfer import recipes
    from tests.test_report import fake_run

    a = fake_run(tmp_path, "scratch", recipes.scratch(epochs=1), [0.5], [True] * 50 + [False] * 10)
    b = fake_run(tmp_path, "other", recipes.scratch(epochs=1), [0.6], [True] * 55 + [False] * 5)
    monkeypatch.chdir(tmp_path)
    result = kerasxfer.compare([str(a), str(b)])
    assert result.report == os.path.join("runs", "report", "report.md") and os.path.isfile(result.report)


def test_the_python_defaults_give_the_command_lines_study():
    """recipes.finetune() alone is RegNet with a download; the API's finetune and study are the commands'."""
    study = commands.study_from(commands.resolve("study", {"dataset": "digits"}).values)
    assert study.transfer.model.backbone == "efficientnet_lite0" and study.transfer.phases[1].lr == 1e-4
    assert study.transfer.phases[1].warmup_epochs == 2.0 and study.transfer.phases[0].solve
    assert study.transfer.phases[1].trainable == "stages:4" and study.scratch.data.image_size == 64
    from kerasxfer import recipes

    finetune = commands.experiment_from(recipes.finetune, commands.resolve("finetune", {}).values)
    assert finetune.data.image_size == "auto" and finetune.model.weights == "imagenet"


def test_an_unknown_option_is_one_sentence_with_the_nearest_name():
    import kerasxfer.studies  # noqa: F401  (a submodule named like an API function would replace it)

    assert all(callable(getattr(kerasxfer, name)) for name in ("study", "finetune", "scratch", "compare", "load"))
    with pytest.raises(UserError, match=r"study has no option fozen_epochs \(did you mean frozen_epochs\?\)"):
        kerasxfer.study("digits", fozen_epochs=3)
    with pytest.raises(UserError, match="optimizer='lbfgs' is unknown: use adam, adamw, sgd"):
        commands.resolve("scratch", {"optimizer": "lbfgs"})


def test_paths_expand_the_home_folder_and_lists_take_strings_or_sequences():
    opts = commands.resolve(
        "study",
        {"dataset": "~/photos", "out_dir": "~/runs/x", "fractions": "0.5,1", "backbones": ("efficientnet_lite0", "regnetx002")},
    )
    home = os.path.expanduser("~")
    assert opts.values["dataset"] == os.path.join(home, "photos") and opts.values["out_dir"].startswith(home)
    assert opts.values["fractions"] == ["0.5", "1"] and opts.values["backbones"] == ["efficientnet_lite0", "regnetx002"]
    assert opts.given == {"dataset", "out_dir", "fractions", "backbones"}


def test_progress_lines_get_a_handler_only_when_the_caller_configured_none(monkeypatch):
    log, root = logging.getLogger("kerasxfer"), logging.getLogger()
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(log, "level", logging.NOTSET)
    kerasxfer.show_progress()
    assert len(log.handlers) == 1 and log.level == logging.INFO
    kerasxfer.show_progress()
    assert len(log.handlers) == 1  # not twice
    mine = logging.StreamHandler()
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(root, "handlers", [mine])
    kerasxfer.show_progress()
    assert log.handlers == [] and root.handlers == [mine]


def test_a_scratch_run_from_python_trains_reports_and_loads(tmp_path):
    r = kerasxfer.scratch("digits", out_dir=str(tmp_path / "s"), epochs=1, image_size=16, widths="8", batch_size=64)
    assert 0.0 <= r.test_accuracy <= 1.0 and r.run_dir == str(tmp_path / "s")
    clf = kerasxfer.load(r.run_dir)
    assert clf.image_size == 16 and len(clf.class_names) == 10


@pytest.mark.parametrize(
    "call,says",
    [
        (lambda: kerasxfer.scratch("digits", lr="0.001"), r"lr='0.001' \(str\) is not a number"),
        (lambda: kerasxfer.scratch("digits", epochs="1"), r"epochs='1' \(str\) is not an integer"),
        (lambda: kerasxfer.finetune("digits", val_fraction="0.2"), r"val_fraction='0.2' \(str\) is not a number"),
        (lambda: kerasxfer.scratch("digits", widths=8), r"widths=8 \(int\) is not a list"),
        (lambda: kerasxfer.scratch("digits", widths=None), r"widths=None is not a list: leave widths out"),
        (lambda: kerasxfer.study("digits", backbones=None), r"backbones=None is not a list"),
        (lambda: kerasxfer.scratch("digits", out_dir=5), r"out_dir=5 \(int\) is not a path"),
        (lambda: kerasxfer.study("digits", folds=2.5), r"folds=2.5 \(float\) is not 'auto' or a whole number"),
        (lambda: kerasxfer.scratch("digits", overwrite="maybe"), r"overwrite='maybe' \(str\) is not a boolean"),
        (lambda: kerasxfer.scratch("digits", seed=True), r"seed=True \(bool\) is not an integer"),
        (lambda: kerasxfer.study("digits", backbones=",,"), r"--backbones= holds an empty name"),
        (lambda: kerasxfer.compare(None), r"runs=None \(NoneType\) is not a list of run directories"),
        (lambda: kerasxfer.load(None), r"run_dir=None \(NoneType\) is not a path"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_sentence_before_anything_runs(tmp_path, monkeypatch, call, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=says):
        call()
    assert os.listdir(tmp_path) == []


def test_flag_words_are_parsed_strictly_and_paths_may_be_pathlib(tmp_path):
    """overwrite="False" was truthy (a finished run trained again), control="false" ran the control."""
    import pathlib

    v = commands.resolve(
        "study",
        {
            "overwrite": "False",
            "control": "false",
            "exhaustive": "yes",
            "folds": 3,
            "out_dir": pathlib.Path(tmp_path) / "s",
            "lr": 1,
        },
    ).values
    assert v["overwrite"] is False and v["control"] is False and v["exhaustive"] is True
    assert v["folds"] == "3" and commands.folds_of(v["folds"]) == 3
    assert v["out_dir"] == str(tmp_path / "s") and isinstance(v["lr"], float)


def test_without_ray_the_ray_executor_is_one_sentence(monkeypatch):
    """Ray is an extra: a venv without it (find_spec finds no "ray") gets the sentence that says what to install."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError, match=r"--executor=ray needs Ray, which is not installed: pip install "):
        commands.study_from(commands.resolve("study", {"dataset": "digits", "executor": "ray"}).values)

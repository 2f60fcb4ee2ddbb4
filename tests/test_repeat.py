"""`kerasxfer repeat RUN_DIR`: a run trained again from its own config.json gives the same history, bytes and all."""

import json
import os
import subprocess
import sys

import pytest

from kerasxfer import recipes
from kerasxfer.config import DataConfig
from kerasxfer.training import run_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repeat(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "experiments.repeat", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "scratch"
    exp = recipes.scratch(
        epochs=2,
        widths=(8,),
        data=DataConfig(image_size=16, batch_size=64),
        out_dir=str(out),
        schedule="cosine",
        label_smoothing=0.1,
        seed=3,
    )
    run_experiment(exp)
    return out


def test_a_repeat_writes_the_same_history_and_says_both_accuracies(original, tmp_path):
    r = repeat(f"--run={original}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    again = original.parent / "scratch-repeat"
    assert (again / "history.json").read_bytes() == (original / "history.json").read_bytes()
    cfg, cfg_again = (json.loads((d / "config.json").read_text()) for d in (original, again))
    assert cfg_again == dict(cfg, out_dir=str(again))  # the recipe came back whole (schedule, smoothing, seed)
    acc = json.loads((original / "metrics.json").read_text())["test"]["accuracy"]
    assert f"test accuracy {acc:.4f} (the original: {acc:.4f})" in r.stdout


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--run={tmp}/nothing"], "holds no config.json"),
        ("{}", ["--run={tmp}/run", "--out_dir={tmp}/run"], "is the run itself"),
        ('{"out_dir": "x", "colour": 1}', ["--run={tmp}/run"], "unknown Experiment field(s) colour"),
        ("not json", ["--run={tmp}/run"], "is not valid JSON"),
        ('{"data": 3}', ["--run={tmp}/run"], "is not a kerasxfer configuration"),
    ],
)
def test_bad_runs_are_one_sentence(tmp_path, setup, args, message):
    if setup is not None:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.json").write_text(setup)
    r = repeat(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr

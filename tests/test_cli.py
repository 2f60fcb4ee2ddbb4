"""Entry points: bad input ends in one clear line and exit code 2, never a traceback."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module, *args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )


def _lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("kerasxfer: error:")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tests.conftest import _write_image

    root = tmp_path_factory.mktemp("cli")
    (root / "empty_class" / "a").mkdir(parents=True)
    (root / "empty_class" / "b").mkdir(parents=True)
    _write_image(str(root / "empty_class" / "a" / "1.png"), 8, (1, 2, 3))
    (root / "single" / "only").mkdir(parents=True)
    for i in range(3):
        _write_image(str(root / "single" / "only" / f"{i}.png"), 8, (1, 2, 3))
    (root / "file.txt").write_text("x")
    return root


CASES = [
    ("scratch", ["--dataset={root}/does_not_exist"], "does not exist"),
    ("scratch", ["--dataset={root}/file.txt"], "is a file, not a folder"),
    ("scratch", ["--dataset={root}/empty_class"], "holds no images"),
    ("scratch", ["--dataset={root}/single"], "single class"),
    ("finetune", ["--backbone=regnetq007"], "not a known RegNet"),
    ("finetune", ["--weights={root}/missing.h5"], "not a readable file"),
    ("finetune", ["--unfreeze_stages=7"], "from 0 to 4"),
    ("scratch", ["--image_size=0"], "out of range"),
    ("scratch", ["--val_fraction=1.5"], "between 0 and 1"),
    ("scratch", ["--epochs=-1"], "epochs"),
    ("scratch", ["--widths=a,b"], "comma-separated integers"),
    ("scratch", ["stray_argument"], "unexpected argument"),
]


@pytest.mark.parametrize("module, args, message", CASES, ids=[c[2] for c in CASES])
def test_bad_input_one_line_exit_2_no_traceback(folders, tmp_path, module, args, message):
    out = tmp_path / "run"
    args = [a.format(root=folders) for a in args] + [f"--out_dir={out}"]
    p = run(module, *args)
    assert p.returncode == 2, p.stderr
    lines = _lines(p.stderr)
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()  # nothing written before the input was checked


def test_unknown_flag_is_refused_by_absl():
    p = run("scratch", "--no_such_flag=1")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "no_such_flag" in p.stderr

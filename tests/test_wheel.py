"""The wheel is the package (issue 44): built from this tree, installed into a clean virtual environment outside it,
and run there (a tiny study, then predict), with no path back to the sources.

The editable install that `make` uses hid that the wheel had no kerasxfer/reporting/ and no kerasxfer/records/:
`pip install .`, the README's way without make, gave a kerasxfer whose study and compare could not import.
"""

import glob
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, cwd, timeout=900, env=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p


@pytest.mark.slow  # make test-ci-slow: a wheel, a new virtual environment and its install (a few minutes)
def test_the_wheel_installed_in_a_clean_venv_runs_a_study_and_predict(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), ROOT]
    _run(build, tmp_path)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "kerasxfer-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    inits = glob.glob(f"{ROOT}/kerasxfer/**/__init__.py", recursive=True)
    for init in inits:  # every package of the tree is in the wheel
        assert os.path.relpath(init, ROOT) in names, init
    assert "kerasxfer/experiments/study.py" in names
    _run([sys.executable, "-m", "venv", str(tmp_path / "venv")], tmp_path)
    bin_ = tmp_path / "venv" / "bin"
    _run([str(bin_ / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[cpu]"], tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    where = _run([str(bin_ / "python"), "-c", "import kerasxfer; print(kerasxfer.__file__)"], tmp_path, env=env)
    assert where.stdout.strip().startswith(str(tmp_path / "venv")), where.stdout  # not the source tree
    study = [str(bin_ / "kerasxfer"), "study", "--dataset=digits", "--image_size=32", "--scratch_image_size=16"]
    study += ["--widths=8", "--backbone=regnetx002", "--weights=none", "--folds=2", "--epochs=2", "--frozen_epochs=1"]
    study += ["--finetune_epochs=1", "--min_steps=0", "--nocontrol", "--out_dir=study"]
    p = _run(study, tmp_path, env=env)
    assert "verdict:" in p.stdout + p.stderr
    assert (tmp_path / "study" / "report" / "report.html").is_file()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "x.png")
    out = tmp_path / "predictions.csv"
    predict = [str(bin_ / "kerasxfer"), "predict", "--run=study/fold1/scratch", "--images=x.png", f"--output={out}"]
    _run(predict, tmp_path, env=env)
    assert "x.png" in out.read_text()

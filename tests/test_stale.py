"""Nothing reused that no longer matches (issue 43): a run, and the decoded-image cache, are checked against
the images they were computed from.

The fifth hostile round: images recoloured in place (same names) or moved between class folders, and the
rerun of the same command reprinted the old verdict ("finished earlier", 0 epochs); a decoded cache keyed by
path, size and mtime served the old pixels after `cp -p`. Each run now records the content of every split
(data.json) and a rerun on other images is refused in one sentence naming --overwrite (a study retrains).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _folder(root, shift=0):
    """Two classes of 8 plain-ish 12x12 BMP images (uncompressed: recolouring keeps each file's size)."""
    rng = np.random.default_rng(0)
    for k, c in enumerate(("dark", "light")):
        os.makedirs(root / c, exist_ok=True)
        for i in range(8):
            img = rng.integers(0, 40, (12, 12, 3)) + 60 + 100 * k + 5 * i + shift
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / c / f"{i}.bmp")
    return root


def _recolour_keeping_size_and_mtime(root):
    """`cp -p` of other pixels over every image: same names, sizes and modification times."""
    for c in ("dark", "light"):
        for f in sorted((root / c).iterdir()):
            st = f.stat()
            img = np.asarray(Image.open(f)).astype(int)
            Image.fromarray((255 - img).astype(np.uint8)).save(f)
            assert f.stat().st_size == st.st_size
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def _move_three(root):
    for i in range(3):
        os.rename(root / "dark" / f"{i}.bmp", root / "light" / f"moved{i}.bmp")


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _snapshot(root):
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read() for d, _, fs in os.walk(root) for f in fs}


@pytest.mark.slow  # make test-ci-slow (CI) runs it: three runs per case, kept out of make test's 10 minutes
@pytest.mark.parametrize(
    "change, said",
    [
        (_recolour_keeping_size_and_mtime, "the train split's images changed"),
        (_move_three, "the train split holds other images or labels"),
    ],
)
def test_a_finished_run_on_changed_images_is_refused_naming_overwrite(tmp_path, change, said):
    data = _folder(tmp_path / "data")
    args = ["experiments.scratch", f"--dataset={data}", "--image_size=12", "--epochs=1", "--widths=4", "--out_dir=o"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    change(data)
    before = _snapshot(tmp_path / "o")
    again = _run(args, tmp_path)
    assert again.returncode == 2, again.stderr[-3000:]
    errors = [line for line in again.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    assert len(errors) == 1 and said in errors[0] and "--overwrite" in errors[0], again.stderr[-3000:]
    assert "is already finished" not in again.stderr
    assert _snapshot(tmp_path / "o") == before  # nothing lost
    fresh = _run([*args, "--overwrite"], tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert _run(args, tmp_path).returncode == 0  # the retrained run is reused as it is


def test_the_decoded_cache_does_not_serve_old_pixels_of_a_file_rewritten_with_its_size_and_mtime(tmp_path):
    from kerasxfer.config import DataConfig
    from kerasxfer.data.pipeline import decode_source

    data = _folder(tmp_path / "data")
    cfg = DataConfig(dataset=str(data), image_size=12, cache_dir=str(tmp_path / "cache"))
    before = decode_source(cfg, seed=0).images["train"].copy()
    assert decode_source(cfg, seed=0).images["train"].tolist() == before.tolist()  # reused while unchanged
    _recolour_keeping_size_and_mtime(data)
    after = decode_source(cfg, seed=0).images["train"]
    np.testing.assert_array_equal(np.asarray(after), 255 - before)


@pytest.mark.slow  # make test-ci-slow: two whole studies
def test_a_study_rerun_on_changed_images_retrains_what_changed_and_never_pools_two_partitions(tmp_path):
    """A 2-fold study, then 4 images added and 3 moved: the rerun says what changed, trains every fold on the new
    partition, and its report tests every image of the new pool once."""
    data = _folder(tmp_path / "data")
    args = ["experiments.study", f"--dataset={data}", "--image_size=32", "--scratch_image_size=12", "--widths=4"]
    args += ["--backbone=regnetx002", "--weights=none", "--folds=2", "--epochs=2", "--frozen_epochs=1"]
    args += ["--finetune_epochs=1", "--min_steps=0", "--nocontrol", "--exhaustive", "--final=scratch", "--out_dir=s"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    _move_three(data)
    for i in range(4):
        Image.fromarray(np.full((12, 12, 3), 20 + 50 * i, np.uint8)).save(data / "light" / f"new{i}.bmp")
    again = _run(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    # 2 folds x 2 arms, and the final model (kerasxfer.final)
    assert again.stderr.count("was trained on other images") == 5, again.stderr[-3000:]
    assert "is already finished" not in again.stderr and "finished earlier" not in again.stderr
    final = json.loads((tmp_path / "s" / "final" / "data.json").read_text())
    assert final["num_train"] + final["num_val"] == 20  # the new pool
    summary = json.loads((tmp_path / "s" / "report" / "summary.json").read_text())
    assert summary["verdict"]["num_images"] == 20 and all(c["mcnemar"]["n"] == 20 for c in summary["comparisons"])


def _weights_files(tmp_path):
    """Two backbone weights files of regnetx002 (random, other seeds): the same size, other bytes."""
    import keras

    from kerasxfer.models.transfer import build_transfer_model, get_backbone

    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        path = tmp_path / f"w{seed}" / "backbone.weights.h5"
        path.parent.mkdir()
        get_backbone(build_transfer_model("regnetx002", (32, 32, 3), 2, weights=None)).save_weights(str(path))
        paths.append(path)
    return paths


def _copy_keeping_size_and_mtime(src, dst):
    st = dst.stat()
    dst.write_bytes(src.read_bytes())
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_frozen_backbones_cached_outputs_are_keyed_by_the_weights_bytes(tmp_path):
    """The study's cache of frozen-backbone outputs was keyed by the weights file's path, size and mtime: other
    weights copied over it with cp -p were served the old backbone's features."""
    from kerasxfer import recipes
    from kerasxfer.features import feature_key

    mine, other = _weights_files(tmp_path)
    assert mine.stat().st_size == other.stat().st_size
    exp = recipes.finetune(weights=str(mine))
    before = feature_key(exp, 0, False)
    _copy_keeping_size_and_mtime(other, mine)
    assert feature_key(exp, 0, False) != before


@pytest.mark.slow  # make test-ci-slow (CI) runs it: two finetune runs
def test_a_finished_run_whose_weights_file_changed_is_refused_naming_overwrite(tmp_path):
    data = _folder(tmp_path / "data")
    mine, other = _weights_files(tmp_path)
    args = ["experiments.finetune", f"--dataset={data}", "--image_size=32", "--backbone=regnetx002"]
    args += [f"--weights={mine}", "--frozen_epochs=1", "--finetune_epochs=1", "--min_steps=0", "--out_dir=o"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((tmp_path / "o" / "data.json").read_text())["weights_sha256"]
    _copy_keeping_size_and_mtime(other, mine)
    again = _run(args, tmp_path)
    assert again.returncode == 2, again.stderr[-3000:]
    errors = [line for line in again.stderr.splitlines() if line.startswith("kerasxfer: error:")]
    assert len(errors) == 1 and f"the weights file {mine} holds other bytes" in errors[0], again.stderr[-3000:]
    assert "--overwrite" in errors[0]
    assert _run([*args, "--overwrite"], tmp_path).returncode == 0
    assert _run(args, tmp_path).returncode == 0  # the retrained run is reused as it is

"""--image_size=auto (kerasxfer.data.sizes): the size each arm trains at, from the data's image sizes and the backbone."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kerasxfer import recipes
from kerasxfer.config import AUTO_SIZE, DataConfig
from kerasxfer.data import sizes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "sides, backbone, size",
    [
        ([375, 500, 480], "efficientnet_lite0", 224),  # photos: the native size
        ([375, 500, 480], "efficientnet_lite1", 240),
        ([375, 500, 480], "efficientnet_lite2", 260),
        ([160, 170, 900], "regnetx002", 224),
        ([8], "efficientnet_lite0", 96),  # the digits: the small-image floor
        ([28] * 10, "efficientnet_lite0", 96),
        ([120, 110, 130], "efficientnet_lite0", 128),  # small: rounded up to a multiple of 32
        ([150, 159, 140], "efficientnet_lite0", 160),
        (None, "efficientnet_lite0", 96),  # procedural images have any size
        ([375, 500], None, 64),  # the scratch CNN's own rule
    ],
)
def test_the_size_follows_the_images_and_the_backbone(sides, backbone, size):
    chosen, why = sizes.choose(sides, backbone)
    assert chosen == size and why.startswith("auto: ")


def _photos(root, shape, n=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    return root


def test_the_data_are_measured_from_image_headers(tmp_path):
    folder = _photos(tmp_path / "p", (240, 320))
    (folder / "class0" / "notes.txt").write_text("not an image")
    assert sizes.short_sides(DataConfig(dataset=str(folder))) == [240] * 12
    assert sizes.short_sides(DataConfig(dataset="digits")) == [8]
    assert sizes.short_sides(DataConfig(dataset="synthetic")) is None


def test_resolve_records_the_choice_and_an_explicit_size_wins(tmp_path):
    folder = _photos(tmp_path / "p", (240, 320))
    auto = recipes.finetune(backbone="efficientnet_lite0", data=DataConfig(dataset=str(folder), image_size=AUTO_SIZE))
    scratch = recipes.scratch(data=DataConfig(dataset=str(folder), image_size=64))
    scratch_r, auto_r = sizes.resolve_arms(scratch, auto)
    assert auto_r.data.image_size == 224 and "native 224" in auto_r.data.image_size_choice
    assert auto_r.to_dict()["data"]["image_size_choice"] == auto_r.data.image_size_choice  # into config.json
    assert scratch_r is scratch  # 64 was given
    given = recipes.finetune(data=DataConfig(dataset=str(folder), image_size=96))
    assert sizes.resolve(given) is given


def test_finetune_and_study_default_to_auto_and_an_image_size_flag_wins():
    code = "import sys, experiments.{m} as e; from absl import flags; F = flags.FLAGS; F(sys.argv); print(F.image_size)"
    for module, args, out in (
        ("finetune", [], "auto"),
        ("study", [], "auto"),
        ("sweep", [], "auto"),
        ("scratch", [], "64"),
        ("finetune", ["--image_size=96"], "96"),
    ):
        p = subprocess.run(
            [sys.executable, "-c", code.format(m=module), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert p.stdout.strip() == out, (module, args, p.stderr[-500:])


@pytest.mark.slow
def test_a_study_on_photo_sized_images_runs_the_transfer_arm_at_224_and_says_so(tmp_path):
    folder = _photos(tmp_path / "photos", (200, 260), n=6)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.study",
            f"--dataset={folder}",
            "--weights=none",
            "--epochs=1",
            "--frozen_epochs=1",
            "--finetune_epochs=1",
            "--widths=8",
            "--min_steps=0",
            "--folds=1",
            "--control=false",
            "--batch_size=6",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "runs" / "study" / "photos"
    transfer = json.loads((out / "transfer" / "config.json").read_text())["data"]
    assert transfer["image_size"] == 224 and "photo-sized" in transfer["image_size_choice"]
    assert json.loads((out / "scratch" / "config.json").read_text())["data"]["image_size"] == 64
    assert "image size 224 (auto: the images' median short side is 200 px" in p.stderr
    assert "Image size: 224 px (auto:" in (out / "report" / "report.md").read_text()

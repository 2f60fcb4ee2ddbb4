import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: kerasxfer sets its oneDNN default
# here exactly as it does for a user who imports it first.
import sys  # noqa: E402

import kerasxfer  # noqa: E402,F401

# tf-keras, the test oracle, lives outside site-packages (make install: .venv/oracle; see setup.cfg).
_ORACLE = os.path.join(sys.prefix, "oracle")
if os.path.isdir(_ORACLE) and _ORACLE not in sys.path:
    sys.path.append(_ORACLE)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def _write_image(path, size, color, mode="RGB", fmt=None):
    rng = np.random.default_rng(abs(hash((path, size))) % 2**32)
    arr = (rng.random((size, size, 3)) * 60 + np.array(color)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)


@pytest.fixture
def make_image_folder(tmp_path):
    """Create class folders of small synthetic images; returns the root.

    ``make_image_folder({"cats": 6, "dogs": 5}, layout="flat"|"split")``.
    Each class has its own base colour, so a model can learn them.
    """

    def make(classes, layout="flat", size=24, val_per_class=2, root_name="data"):
        root = tmp_path / root_name
        colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
        exts = [("jpg", "JPEG", "RGB"), ("png", "PNG", "RGB"), ("bmp", "BMP", "RGB"), ("gif", "GIF", "P")]
        for ci, (name, n) in enumerate(classes.items()):
            for i in range(n):
                if layout == "split":
                    part = "val" if i < val_per_class else "train"
                    folder = root / part / name
                else:
                    folder = root / name
                folder.mkdir(parents=True, exist_ok=True)
                ext, fmt, mode = exts[i % len(exts)]
                _write_image(str(folder / f"img {i}.{ext}"), size, colors[ci % len(colors)], mode, fmt)
        return root

    return make

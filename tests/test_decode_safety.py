"""Files that must never reach TensorFlow's decoders: animated WebP (memory corruption in tf.io.decode_webp),
decompression bombs PIL refuses to measure, PNGs whose header PIL rejects.  Every file is made here."""

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

from kerasxfer.data.decode import screen_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(path, width, height, bad_crc=False):
    """A PNG whose header declares ``width`` x ``height`` (8-bit grey) with one tiny, truncated IDAT."""

    def chunk(kind, data, crc=None):
        crc = zlib.crc32(kind + data) if crc is None else crc
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr, 0 if bad_crc else None)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b"")
        )


def _animated_webp(path):
    frames = [Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], format="WEBP", duration=100)


def test_a_decompression_bomb_pil_refuses_is_measured_and_refused(tmp_path):
    """400 megapixels declared (PIL raises its own bomb error at 179 MP): over the 40 MP limit, never decoded."""
    _png(tmp_path / "bomb.png", 20000, 20000)
    why = screen_file(str(tmp_path / "bomb.png"))
    assert why is not None and why.startswith("20000x20000 = 400 megapixels, above --max_image_pixels")


def test_a_png_with_a_bad_header_checksum_is_still_measured(tmp_path):
    _png(tmp_path / "crc.png", 9000, 9000, bad_crc=True)
    why = screen_file(str(tmp_path / "crc.png"))
    assert why is not None and why.startswith("9000x9000 = 81 megapixels")
    _png(tmp_path / "small.png", 64, 64, bad_crc=True)
    assert screen_file(str(tmp_path / "small.png")) is None  # small: the decoder decides (and skips it if it must)


def test_an_animated_webp_is_screened_out_and_never_reaches_the_webp_decoder(tmp_path):
    _animated_webp(tmp_path / "anim.webp")
    why = screen_file(str(tmp_path / "anim.webp"))
    assert why is not None and why.startswith("an animated WebP")
    # the decoder itself refuses the bytes (tfds records and predict's bytes are not screened as files): an
    # error, not a crash of the process (exit 134, "free(): corrupted unsorted chunks")
    code = (
        "import sys, tensorflow as tf\n"
        "from kerasxfer.data.decode import decode_image_bytes\n"
        "data = tf.constant(open(sys.argv[1], 'rb').read())\n"
        "try:\n    decode_image_bytes(data)\nexcept tf.errors.InvalidArgumentError:\n    print('refused')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "anim.webp")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert p.returncode == 0 and p.stdout.strip() == "refused", (p.returncode, p.stderr[-1500:])
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "still.webp", format="WEBP")
    assert screen_file(str(tmp_path / "still.webp")) is None  # a still WebP is an ordinary image


def test_the_bench_data_folder_never_deletes_a_users_photos(tmp_path):
    """A folder with class0/, class1/ and a `.complete` file of the user's own: refused, nothing removed; the
    bench's own folder, rewritten for other settings, loses only the files the bench wrote."""
    import pytest

    from kerasxfer.bench import write_jpeg_folder
    from kerasxfer.errors import UserError

    user = tmp_path / "photos"
    for c in ("class0", "class1"):
        (user / c).mkdir(parents=True)
        (user / c / "holiday.jpg").write_bytes(b"mine")
    (user / ".complete").write_text("4 8x8 4 0")
    with pytest.raises(UserError, match="holds files the bench did not write"):
        write_jpeg_folder(str(user), n=4, size=(8, 8))
    assert sorted(p.name for p in user.rglob("*")) == [".complete", "class0", "class1", "holiday.jpg", "holiday.jpg"]
    ours = tmp_path / "bench"
    write_jpeg_folder(str(ours), n=4, size=(8, 8))
    (ours / "class0" / "keep.jpg").write_bytes(b"added by the user")
    write_jpeg_folder(str(ours), n=2, size=(8, 8))  # other settings: the old photos go, the user's file stays
    assert (ours / "class0" / "keep.jpg").read_bytes() == b"added by the user"
    assert sorted(p.name for p in (ours / "class0").iterdir()) == ["keep.jpg", "photo 0000.jpg"]


def test_legacy_h5_files_are_checked_before_any_data_is_read(tmp_path):
    """A tf-keras .h5 whose layer names a group it lacks, or declares a 4 TiB dataset: one sentence, nothing read."""
    import h5py
    import keras
    import pytest

    from kerasxfer.errors import UserError
    from kerasxfer.models.weights import load_h5_by_name

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])

    def legacy(path, make):
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = [b"dense"]
            make(f)

    def huge(f):
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"kernel", b"bias"]
        g.create_dataset("kernel", shape=(2**20, 2**20, 1024), dtype="float32", chunks=(1, 1, 1024))  # 4 TiB
        g.create_dataset("bias", data=np.zeros(3, "float32"))

    legacy(tmp_path / "missing.h5", lambda f: None)  # names the layer, has no group for it
    with pytest.raises(UserError, match="is damaged"):
        load_h5_by_name(model, str(tmp_path / "missing.h5"))
    legacy(tmp_path / "huge.h5", huge)
    assert os.path.getsize(tmp_path / "huge.h5") < 100_000
    with pytest.raises(UserError, match=r"has weights of shapes \[\(1048576, 1048576, 1024\), \(3,\)\] in the file"):
        load_h5_by_name(model, str(tmp_path / "huge.h5"))


def test_a_file_name_that_is_not_utf8_is_skipped_or_named_not_a_traceback(tmp_path):
    import pytest

    from kerasxfer.config import DataConfig
    from kerasxfer.data import load_data
    from kerasxfer.errors import UserError

    root = tmp_path / "photos"
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            img = np.full((10, 10, 3), 40 * i, np.uint8)
            img[:, 5:] += 128 if c == "dogs" else 0  # no image under two labels (tests/test_duplicates.py)
            Image.fromarray(img).save(root / c / f"{i}.png")
    bad = os.path.join(os.fsencode(root / "cats"), b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(open(bad, "wb"), format="PNG")
    data = load_data(DataConfig(dataset=str(root), image_size=8, batch_size=4), seed=0)
    assert data.info["skipped_undecodable"] == 1
    with pytest.raises(UserError, match="caf\ufffd.png \\(its name is not valid UTF-8") as e:
        load_data(DataConfig(dataset=str(root), image_size=8, batch_size=4, on_bad_image="error"), seed=0)
    assert "\n" not in str(e.value)


def test_an_image_truncated_after_the_check_is_one_sentence(tmp_path):
    import pytest
    import tensorflow as tf

    from kerasxfer.data.arrays import decode_all
    from kerasxfer.data.decode import decode_image_file
    from kerasxfer.errors import UserError

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((12, 12, 3), 50 * i, np.uint8)).save(p)
        paths.append(str(p))
    data = open(paths[1], "rb").read()
    open(paths[1], "wb").write(data[: len(data) // 2])  # truncated after the screening step
    with pytest.raises(UserError, match="could not be decoded a moment later") as e:
        decode_all(np.array(paths), lambda p: decode_image_file(p), 8)
    assert "\n" not in str(e.value)
    assert tf.executing_eagerly()

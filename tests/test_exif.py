"""EXIF orientation (issue 44): a phone's portrait photo arrives upright wherever kerasxfer decodes it.

TensorFlow's JPEG decoder ignores the orientation tag, so a photo stored landscape with "rotate 90" in its EXIF
trained and predicted sideways. Each of the eight orientations is compared with PIL's ImageOps.exif_transpose
(an independent implementation) on a picture whose every turn and mirror differs.
"""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from kerasxfer.data.decode import decode_image_bytes, decode_image_file


def _picture():
    """40 x 24, four colour blocks of different sizes: no rotation or mirror of it is another one."""
    img = np.zeros((24, 40, 3), np.uint8)
    img[:12, :30] = (230, 30, 30)
    img[12:, :10] = (30, 230, 30)
    img[12:, 10:] = (30, 30, 230)
    img[:12, 30:] = (240, 240, 40)
    return img


def _jpeg(path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_picture()).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return str(path)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_pil_applies_it(tmp_path, orientation):
    path = _jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    got = decode_image_file(tf.constant(path)).numpy().astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 3  # two JPEG decoders: the same picture, up to rounding


def test_rotate_90_arrives_upright_in_training_and_reduced_size_decoding(tmp_path):
    """Orientation 6 ("rotate 90 clockwise to display"): stored 40 wide, the image is 24 wide and 40 high."""
    path = _jpeg(tmp_path / "portrait.jpg", 6)
    data = tf.io.read_file(path)
    assert decode_image_bytes(data).shape == (40, 24, 3)
    assert decode_image_bytes(data, exif=False).shape == (24, 40, 3)  # the exported signature's decoder
    ds = tf.data.Dataset.from_tensor_slices([path]).map(decode_image_file)  # as the input pipeline runs it
    (img,) = list(ds.as_numpy_iterator())
    red, green, _ = img[0, -1]  # the red block, top left as stored, is now top right
    assert img.shape == (40, 24, 3) and red > 150 and green < 100

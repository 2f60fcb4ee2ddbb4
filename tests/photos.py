"""The photos scikit-image ships, as the float32 batches the models take."""

import os

import numpy as np

NAMES = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")


def photos(size: int, names=NAMES) -> np.ndarray:
    """``names`` from ``skimage/data`` resized as training resizes (squash), float32 (N, size, size, 3) in [0, 255]."""
    import skimage
    import tensorflow as tf
    from PIL import Image

    from kerasxfer.data.arrays import to_rgb_resized

    out = []
    for name in names:
        img = np.asarray(Image.open(os.path.join(os.path.dirname(skimage.__file__), "data", name)).convert("RGB"))
        out.append(to_rgb_resized(tf.constant(img), size).numpy().astype("float32"))
    return np.stack(out)

"""Tiny tfds builders the tests prepare themselves (no network)."""

import numpy as np
import tensorflow_datasets as tfds

COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def _image(i, label):
    rng = np.random.default_rng(i)
    img = (rng.random((20 + i % 7, 24, 3)) * 40 + np.array(list(COLORS.values())[label])).clip(0, 255)
    return img.astype(np.uint8)


class KxTinyColors(tfds.core.GeneratorBasedBuilder):
    """Three colour classes; a train split, and a validation split when ``WITH_VALIDATION``."""

    VERSION = tfds.core.Version("1.0.0")
    WITH_VALIDATION = False
    NUM_TRAIN = 30
    NUM_VAL = 9

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=list(COLORS)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        splits = {"train": self._generate_examples(self.NUM_TRAIN, 0)}
        if self.WITH_VALIDATION:
            splits["validation"] = self._generate_examples(self.NUM_VAL, 1000)
        return splits

    def _generate_examples(self, n, offset):
        for i in range(n):
            yield i, {"image": _image(offset + i, i % 3), "label": i % 3}


class KxTinyColorsVal(KxTinyColors):
    WITH_VALIDATION = True


class KxUnreachable(KxTinyColors):
    """A dataset whose download address refuses connections (loopback, closed port)."""

    def _split_generators(self, dl_manager):
        dl_manager.download("http://127.0.0.1:9/kx_unreachable.zip")
        return super()._split_generators(dl_manager)

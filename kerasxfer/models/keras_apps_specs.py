"""The keras.applications backbones kerasxfer offers, as plain data (no TensorFlow).

Keras builds these networks (``keras.applications``); kerasxfer adds for each
family the *stage table* that ``--unfreeze_stages`` counts (stages input to
output, each a set of named blocks; the layers before the first are the
stem), the preprocessing it puts inside the model (so raw [0, 255] pixels go
in), the native image size and where the ImageNet weights come from.

``FAMILIES[name] = (title, stages, stage rules, stem rule, preprocessing)``:
a stage rule maps a regular expression on a layer's name to the stage it
names; the stem rule names the layers before the first stage.
``VARIANTS[variant] = (family, keras.applications constructor, native size,
weights file, url, hash)``: the notop ImageNet file Keras itself uses (same
name, same origin, same md5/sha256), fetched into the Keras cache once.
"""

#: Preprocessing modes (what the model does to raw [0, 255] RGB pixels before the network).
CAFFE = "caffe"  # BGR, ImageNet channel means subtracted (ResNet50): the first kernel's channels are reversed
TF = "tf"  # scaled to [-1, 1] (ResNet50V2, MobileNetV2)
TORCH = "torch"  # [0, 1], then ImageNet mean/std (DenseNet)
BUILT_IN = "built-in"  # the Keras model rescales/normalises itself (MobileNetV3, EfficientNet(V2), ConvNeXt)

PREPROCESSING_WORDS = {
    CAFFE: "ImageNet channel means subtracted (caffe mode; the first convolution reads RGB), inside the model",
    TF: "scaled to [-1, 1], inside the model",
    TORCH: "[0, 1], then ImageNet mean/std normalisation, inside the model",
    BUILT_IN: "Keras' own rescaling/normalisation layers, inside the model",
}

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # caffe mode, on [0, 255]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A stage rule: (regular expression on a layer's name, stage, offset): the rule names ``stage``, or, when that is
# None, the number the expression captured plus ``offset``.
FAMILIES = {
    "resnet": (
        "ResNet",
        ("conv2", "conv3", "conv4", "conv5"),
        ((r"^conv([2-5])_", None, -2), (r"^post_", 3, 0)),
        r"^conv1_",
        CAFFE,
    ),
    "resnet_v2": (
        "ResNetV2",
        ("conv2", "conv3", "conv4", "conv5"),
        ((r"^conv([2-5])_", None, -2), (r"^post_", 3, 0)),
        r"^conv1_",
        TF,
    ),
    "mobilenet_v2": (
        "MobileNetV2",
        ("stride4", "stride8", "stride16", "stride32", "top"),
        (
            (r"^expanded_conv_", 0, 0),
            (r"^block_[12]_", 0, 0),
            (r"^block_[3-5]_", 1, 0),
            (r"^block_([6-9]|1[0-2])_", 2, 0),
            (r"^block_1[3-6]_", 3, 0),
            (r"^Conv_1", 4, 0),
        ),
        r"^(Conv1|bn_Conv1)$",
        TF,
    ),
    "mobilenet_v3_small": (
        "MobileNetV3Small",
        ("stride8", "stride16", "stride32", "top"),
        (
            (r"^expanded_conv_(?!\d)", 0, 0),
            (r"^expanded_conv_[12]_", 0, 0),
            (r"^expanded_conv_[3-7]_", 1, 0),
            (r"^expanded_conv_([89]|10)_", 2, 0),
            (r"^conv_1", 3, 0),
        ),
        r"^conv(_bn)?$",
        BUILT_IN,
    ),
    "mobilenet_v3_large": (
        "MobileNetV3Large",
        ("stride8", "stride16", "stride32", "top"),
        (
            (r"^expanded_conv_(?!\d)", 0, 0),
            (r"^expanded_conv_[1-5]_", 0, 0),
            (r"^expanded_conv_([6-9]|1[01])_", 1, 0),
            (r"^expanded_conv_1[2-4]_", 2, 0),
            (r"^conv_1", 3, 0),
        ),
        r"^conv(_bn)?$",
        BUILT_IN,
    ),
    "efficientnet": (
        "EfficientNet",
        ("block1", "block2", "block3", "block4", "block5", "block6", "block7", "top"),
        ((r"^block([1-7])[a-z]_", None, -1), (r"^top_", 7, 0)),
        r"^(stem_|normalization(_\d+)?$)",
        BUILT_IN,
    ),
    "efficientnet_v2": (
        "EfficientNetV2",
        ("block1", "block2", "block3", "block4", "block5", "block6", "top"),
        ((r"^block([1-6])[a-z]_", None, -1), (r"^top_", 6, 0)),
        r"^stem_",
        BUILT_IN,
    ),
    "convnext": (
        "ConvNeXt",
        ("stage0", "stage1", "stage2", "stage3"),
        ((r"_stage_([0-3])_", None, 0), (r"_downsampling_block_([0-2])$", None, 1), (r"^layer_normalization(_\d+)?$", 3, 0)),
        r"_stem$",
        BUILT_IN,
    ),
    "densenet": (
        "DenseNet",
        ("conv2", "conv3", "conv4", "conv5"),
        ((r"^conv([2-5])_", None, -2), (r"^pool([2-4])_", None, -2), (r"^bn$", 3, 0)),
        r"^conv1_",
        TORCH,
    ),
}

_K = "https://storage.googleapis.com/tensorflow/keras-applications/"
VARIANTS = {
    "resnet50": (
        "resnet",
        "ResNet50",
        224,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _K + "resnet/",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "resnet50v2": (
        "resnet_v2",
        "ResNet50V2",
        224,
        "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _K + "resnet/",
        "fac2f116257151a9d068a22e544a4917",
    ),
    "mobilenetv2": (
        "mobilenet_v2",
        "MobileNetV2",
        224,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        _K + "mobilenet_v2/",
        None,
    ),  # Keras publishes no hash for this file
    "mobilenetv3small": (
        "mobilenet_v3_small",
        "MobileNetV3Small",
        224,
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        _K + "mobilenet_v3/",
        "d3e8ec802a04aa4fc771ee12a9a9b836",
    ),
    "mobilenetv3large": (
        "mobilenet_v3_large",
        "MobileNetV3Large",
        224,
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        _K + "mobilenet_v3/",
        "07fb09a5933dd0c8eaafa16978110389",
    ),
    "efficientnetb0": (
        "efficientnet",
        "EfficientNetB0",
        224,
        "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        "50bc09e76180e00e4465e1a485ddc09d",
    ),
    "efficientnetb1": (
        "efficientnet",
        "EfficientNetB1",
        240,
        "efficientnetb1_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        "74c4e6b3e1f6a1eea24c589628592432",
    ),
    "efficientnetb2": (
        "efficientnet",
        "EfficientNetB2",
        260,
        "efficientnetb2_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        "111f8e2ac8aa800a7a99e3239f7bfb39",
    ),
    "efficientnetb3": (
        "efficientnet",
        "EfficientNetB3",
        300,
        "efficientnetb3_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        "af6d107764bb5b1abb91932881670226",
    ),
    "efficientnetv2b0": (
        "efficientnet_v2",
        "EfficientNetV2B0",
        224,
        "efficientnetv2-b0_notop.h5",
        _K + "efficientnet_v2/",
        "893217f2bb855e2983157299931e43ff",
    ),
    "efficientnetv2b1": (
        "efficientnet_v2",
        "EfficientNetV2B1",
        240,
        "efficientnetv2-b1_notop.h5",
        _K + "efficientnet_v2/",
        "0e80663031ca32d657f9caa404b6ec37",
    ),
    "efficientnetv2b2": (
        "efficientnet_v2",
        "EfficientNetV2B2",
        260,
        "efficientnetv2-b2_notop.h5",
        _K + "efficientnet_v2/",
        "1dfe2e7a5d45b6632553a8961ea609eb",
    ),
    "efficientnetv2b3": (
        "efficientnet_v2",
        "EfficientNetV2B3",
        300,
        "efficientnetv2-b3_notop.h5",
        _K + "efficientnet_v2/",
        "f6abf7b5849ac99a89b50dd3fd532856",
    ),
    "convnext_tiny": (
        "convnext",
        "ConvNeXtTiny",
        224,
        "convnext_tiny_notop.h5",
        _K + "convnext/",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    ),
    "densenet121": (
        "densenet",
        "DenseNet121",
        224,
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _K + "densenet/",
        "30ee3e1110167f948a6b9946edeeb738",
    ),
}


def variants_of(family: str) -> tuple:
    """The ``--backbone`` values of ``family``, in table order."""
    return tuple(v for v, spec in VARIANTS.items() if spec[0] == family)

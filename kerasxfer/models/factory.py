"""From a :class:`~kerasxfer.config.ModelConfig` to a network, and from a phase's rule to what trains."""

from __future__ import annotations

import keras

from kerasxfer.models.scratch import build_scratch_cnn
from kerasxfer.models.transfer import build_backbone_classifier, build_transfer_model, freeze, unfreeze
from kerasxfer.phases import parse_trainable


def _scratch(m, shape, num_classes, aug):
    return build_scratch_cnn(
        shape,
        num_classes,
        widths=tuple(m.widths),
        convs_per_block=m.convs_per_block,
        dropout=m.dropout,
        bn_momentum=m.bn_momentum,
        **aug,
    )


def _transfer(m, shape, num_classes, aug):
    return build_transfer_model(m.backbone, shape, num_classes, weights=m.weights, dropout=m.dropout, **aug)


def _whole_backbone(m, shape, num_classes, aug):
    return build_backbone_classifier(m.backbone, shape, num_classes, dropout=m.dropout, **aug)


#: ModelConfig.kind -> builder(model config, input shape, classes, augmentation kwargs)
BUILDERS = {"scratch": _scratch, "transfer": _transfer, "regnet": _whole_backbone}


def build_model(exp, num_classes: int) -> keras.Model:
    """The network ``exp.model`` describes, for ``num_classes`` classes (with ``exp.data.augment`` in front)."""
    s = exp.data.image_size
    return BUILDERS[exp.model.kind](exp.model, (s, s, 3), num_classes, dict(augment=exp.data.augment, seed=exp.seed))


def apply_trainable(model: keras.Model, rule: str, num_stages: int, transfer: bool = False, bn: str = "frozen") -> None:
    """Set what trains in a phase: ``all``, ``head`` or ``stages:K`` (of a backbone of ``num_stages`` stages).

    ``all`` on a ``transfer`` model is the whole backbone, stem included; on the others every layer.
    ``bn``: in a transfer model's ``all``/``stages:K`` phases every BatchNorm layer of the backbone is
    frozen (inference mode, statistics kept) or trains (``train``: batch statistics, moving averages,
    scale and offset), whichever stages are unfrozen.
    """
    kind, k = parse_trainable(rule, num_stages)
    if kind == "all" and transfer:
        unfreeze(model, num_stages, stem=True, train_bn=bn == "train")
    elif kind == "all":
        model.trainable = True
    elif kind == "head":
        freeze(model)
    else:
        unfreeze(model, k, train_bn=bn == "train")

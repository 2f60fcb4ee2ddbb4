"""Where a run's weights came from, and the backbone file a pretraining run hands on to fine-tuning."""

from __future__ import annotations

import logging
import os

from kerasxfer import fsio, rundir
from kerasxfer.families import family_of

log = logging.getLogger("kerasxfer")


def weights_source(exp) -> str:
    """Where the run's weights came from, in words (for history.json and reports)."""
    m = exp.model
    if not m.uses_backbone:
        return "none (scratch CNN, random initialisation)"
    if not m.is_transfer:
        return f"none ({m.backbone} trained from random initialisation)"
    if m.weights is None:
        return "none (random backbone, BatchNorm statistics re-estimated on the training images)"
    if m.weights == "imagenet":
        return "ImageNet (" + family_of(m.backbone).imagenet.format(variant=m.backbone) + ")"
    info = os.path.join(os.path.dirname(os.path.abspath(m.weights)), rundir.BACKBONE_INFO)
    if os.path.basename(m.weights) == rundir.BACKBONE_WEIGHTS and os.path.isfile(info):
        try:
            i = fsio.read_json(info)
            return (
                f"self-pretrained on {i['pretrained_on']}: {int(i['num_train'])} images, best val_acc "
                f"{float(i['best_val_accuracy']):.2%} (file {m.weights})"
            )
        except (OSError, ValueError, KeyError, TypeError):  # {}, a list, not JSON: the file is all we can name
            log.warning("%s is damaged or incomplete: the report names only the weights file", info)
    return f"file {m.weights}"


def weights_fingerprint(exp) -> str | None:
    """The sha256 of the backbone weights file a run was given (``--weights=PATH``): a run, or the study's cache
    of frozen-backbone outputs, made from other bytes under the same path is never reused.  None for random or
    published weights (the published files are verified against their own sha256 when loaded)."""
    m = exp.model
    if not (m.is_transfer and m.weights not in (None, "imagenet") and os.path.isfile(m.weights)):
        return None
    return fsio.sha256_of(m.weights)


def export_backbone(run_dir: str) -> str:
    """Save the backbone of a run's best model as ``backbone.weights.h5`` (+ ``backbone.json``).

    The file loads into ``finetune --weights=PATH`` (and the family's
    builder, e.g. ``RegNet(weights=PATH)``) for the same variant;
    ``backbone.json`` records where it came from, so reports can say what a
    fine-tuned run started from.
    """
    from kerasxfer.evaluation import load_model
    from kerasxfer.models import get_backbone

    backbone = get_backbone(load_model(os.path.join(run_dir, rundir.MODEL)))
    path = os.path.join(run_dir, rundir.BACKBONE_WEIGHTS)
    with fsio.atomic_path(path) as tmp:
        backbone.save_weights(tmp)
    data = fsio.read_json(os.path.join(run_dir, rundir.DATA))
    metrics = fsio.read_json(os.path.join(run_dir, rundir.METRICS))
    fsio.write_json(
        os.path.join(run_dir, rundir.BACKBONE_INFO),
        {
            "variant": backbone.name,
            "pretrained_on": data["source"],
            "num_classes": len(data["class_names"]),
            "num_train": data["num_train"],
            "image_size": data["image_size"],
            "best_val_accuracy": metrics["val"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"],
            "best_epoch": metrics["best_epoch"],
            "run_dir": os.path.abspath(run_dir),
        },
    )
    log.info("backbone weights exported to %s", path)
    return path

"""Pretrain a backbone on a source task and export it for fine-tuning.

    make pretrain
    python -m experiments.pretrain --dataset=synthetic --backbone=regnetx002 --epochs=8 --out_dir=runs/pretrain
    python -m experiments.finetune --weights=runs/pretrain/backbone.weights.h5

Where ImageNet weights cannot be downloaded, this makes a pretrained
backbone: the whole network (random start, every layer and BatchNorm
training) learns the source dataset — by default ``synthetic``, 24 classes of
shapes x textures drawn procedurally — and the backbone of the best
checkpoint is written to ``<out_dir>/backbone.weights.h5`` with its
provenance in ``backbone.json``.  Any dataset kerasxfer reads works as the
source (domain-specific pretraining on your own large image set).

Expected on 2 CPU cores (measured in ``make demo-regnet``, 2026-11-29, with
9,600 synthetic images at 64x64, RegNetX002, 6 epochs): about 3 minutes,
best val_accuracy 0.26 on the 24 procedural classes; the defaults (12,000
images, 8 epochs) take proportionally longer.
"""

from absl import flags

from kerasxfer import families, recipes

from . import common

FLAGS = flags.FLAGS
common.define_common_flags("runs/pretrain", dataset="synthetic")
flags.DEFINE_string("backbone", "regnetx002", f"Backbone to pretrain: {', '.join(families.all_backbones())}.")
flags.DEFINE_integer("epochs", 8, "Training epochs.")
flags.DEFINE_integer("synthetic_train", 12000, "Training images of the synthetic dataset.")
flags.DEFINE_integer("synthetic_val", 1200, "Validation images of the synthetic dataset.")
flags.DEFINE_integer("synthetic_test", 1200, "Test images of the synthetic dataset.")
FLAGS.set_default("dropout", 0.0)  # plenty of data: no dropout before the pretraining head


def export(exp):
    from kerasxfer.provenance import export_backbone

    path = export_backbone(exp.out_dir)
    print(f"backbone weights: {path}\nnext: python -m experiments.finetune --backbone={exp.model.backbone} --weights={path}")


# --helpshort lists the shared flags too (they are defined in experiments.common).
flags.adopt_module_key_flags(common)


def run():
    """The command: `python -m experiments.pretrain` or `kerasxfer pretrain`."""
    common.run_main(common.train_main(recipes.pretrain, after=export))


if __name__ == "__main__":
    run()

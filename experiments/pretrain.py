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

from kerasxfer import config, recipes

from . import common

common.define_common_flags("runs/pretrain", dataset="synthetic")
common.define_recipe_flags(recipes.pretrain)
common.define_field_flags(config.DataConfig, ("synthetic_train", "synthetic_val", "synthetic_test"))


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

"""Transfer a backbone: phase 1 with the backbone frozen, phase 2 with its last stages unfrozen.

    make finetune                 # ImageNet weights (downloaded once; see README for offline)
    make finetune WEIGHTS=none    # random backbone
    python -m experiments.finetune --backbone=regnetx002 --weights=none \\
        --frozen_epochs=10 --finetune_epochs=10 --unfreeze_stages=2 --out_dir=runs/finetune

Expected on 2 CPU cores (digits, measured in ``make demo``, 2026-11-29):
EfficientNet-Lite0 from its published ImageNet weights at 96x96, 10 frozen +
8 epochs with 4 stages unfrozen at 2e-4 (``--backbone=efficientnet_lite0
--image_size=96 --unfreeze_stages=4 --finetune_lr=2e-4 --finetune_epochs=8``):
about 1.5 minutes, best val_acc 0.932 frozen and 0.993 unfrozen, test 0.969.
From a *random* backbone the frozen phase is a probe of random features and
the unfrozen phase does the learning; with ImageNet weights phase 1 already
transfers.
"""

from absl import flags

from experiments import common
from kerasxfer import families, recipes

common.define_common_flags("runs/finetune")
flags.DEFINE_string("backbone", "regnetx002", f"Backbone: {', '.join(families.all_backbones())}.")
flags.DEFINE_string(
    "weights", "imagenet",
    "Backbone weights: 'imagenet' (official keras-applications file, downloaded once into the Keras "
    "cache), 'none' (random), or the path of a weights file (.h5 from keras-applications or a "
    "kerasxfer .weights.h5).",
)
flags.DEFINE_integer("frozen_epochs", 10, "Phase 1 epochs (backbone frozen).")
flags.DEFINE_integer("finetune_epochs", 10, "Phase 2 epochs (last stages unfrozen).")
flags.DEFINE_float("finetune_lr", 1e-5, "Phase 2 learning rate.")
flags.DEFINE_bool(
    "cache_features", None,
    "Phase 1 trains the head on backbone features computed once per image (the same result, many times "
    "faster). Default: on unless --augment or --mixup/--cutmix change the images every epoch.",
)
flags.DEFINE_integer("unfreeze_stages", 2, "How many of the backbone's last stages phase 2 unfreezes (BatchNorm "
                     "stays frozen); RegNet has 4.")

if __name__ == "__main__":
    common.run_main(common.train_main(recipes.finetune))

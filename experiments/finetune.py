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

from kerasxfer import recipes

from . import common

#: The command: `python -m experiments.finetune` or `kerasxfer finetune`.
run = common.training_command(recipes.finetune)
flags.adopt_module_key_flags(common)  # --helpshort lists the shared flags too

if __name__ == "__main__":
    run()

"""Transfer a backbone: phase 1 with the backbone frozen, phase 2 with its last stages unfrozen.

    make finetune                 # ImageNet weights (downloaded once; see README for offline)
    make finetune WEIGHTS=none    # random backbone
    python -m experiments.finetune --backbone=regnetx002 --weights=none \\
        --frozen_epochs=10 --finetune_epochs=10 --unfreeze_stages=2 --out_dir=runs/finetune

What it gives on the built-in digits is measured where it can be rerun:
``make demo`` (README, "The two commands") runs this recipe beside the
scratch CNN and the control and prints the test accuracies.
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

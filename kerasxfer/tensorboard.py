"""What a run adds to TensorBoard beyond Keras' per-epoch scalars.

Keras' ``TensorBoard`` callback writes ``epoch_loss``/``epoch_accuracy`` (and
``epoch_learning_rate``, ``epoch_phase``, which :mod:`kerasxfer.callbacks` adds
to the logs) into ``tb/train`` and ``tb/validation``.  This module writes into
``tb/`` itself:

* a text marker at the first epoch of every phase (where the unfreeze happens);
* the run's hyperparameters and final metrics for the HParams plugin, so the
  HParams table lines up scratch against fine-tune;
* the confusion matrix of the best checkpoint and a grid of the test images
  with the highest loss ("top losses"), as images.
"""

from __future__ import annotations

import tensorflow as tf


def _writer(tb_dir):
    return tf.summary.create_file_writer(tb_dir)


def write_phase_marker(tb_dir: str, step: int, text: str) -> None:
    w = _writer(tb_dir)
    with w.as_default():
        tf.summary.text("phase", text, step=step)
    w.flush()
    w.close()


def scalar_writer(tb_dir: str):
    """A summary writer kept open across epochs (close it at the end)."""
    return _writer(tb_dir)


def write_scalars(writer, name: str, steps, values) -> None:
    """Scalar ``name`` at each of ``steps`` (the learning rate of every step) through ``writer``."""
    with writer.as_default():
        for step, value in zip(steps, values):
            tf.summary.scalar(name, float(value), step=int(step))
    writer.flush()


def flat_hparams(exp) -> dict:
    """The experiment as HParams values (bool/int/float/str only)."""
    m, d = exp.model, exp.data
    hp = {
        "run": exp.name,
        "model": m.backbone if m.uses_backbone else m.kind,
        "weights": str(m.weights) if m.is_transfer and m.weights is not None else "random",
        "dataset": d.dataset,
        "image_size": d.image_size,
        "batch_size": d.batch_size,
        "seed": exp.seed,
        "dropout": m.dropout,
    }
    o = exp.optim
    hp.update(
        optimizer=o.optimizer,
        weight_decay=o.weight_decay,
        schedule=o.schedule,
        warmup_epochs=o.warmup_epochs,
        lr_stage_decay=o.lr_stage_decay,
        label_smoothing=o.label_smoothing,
        grad_clip=o.grad_clip,
        bn=o.bn,
        ema=o.ema if o.ema is not None else -1.0,
        early_stopping=o.early_stopping,
    )
    for p in exp.phases:
        hp[f"{p.name}_epochs"] = p.epochs
        hp[f"{p.name}_lr"] = p.lr
        hp[f"{p.name}_trainable"] = p.trainable
    return hp


def write_hparams(tb_dir: str, exp, final: dict, step: int) -> None:
    """Hyperparameters of ``exp`` and the ``final`` metrics (name -> float) for the HParams plugin."""
    from tensorboard.plugins.hparams import api as hp_api

    w = _writer(tb_dir)
    with w.as_default():
        hp_api.hparams(flat_hparams(exp), trial_id=exp.out_dir)
        for k, v in final.items():
            tf.summary.scalar(k, float(v), step=step)
    w.flush()
    w.close()


def write_images(tb_dir: str, step: int, named_pngs: dict) -> None:
    w = _writer(tb_dir)
    with w.as_default():
        for name, png in named_pngs.items():
            img = tf.io.decode_png(png, channels=4)[None]
            tf.summary.image(name, img, step=step)
    w.flush()
    w.close()

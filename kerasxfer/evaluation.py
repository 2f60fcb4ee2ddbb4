"""Evaluating a run's best checkpoint: metrics.json, confusion matrix, top losses, HParams."""

from __future__ import annotations

import os

import keras
import numpy as np

from kerasxfer import figures, fsio, rundir, tensorboard
from kerasxfer.data import DataSplits
from kerasxfer.models.inference_graph import inference_model


def load_model(path: str) -> keras.Model:
    """Load a saved run model safely (no Lambda layers, no pickles)."""
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def count_params(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def evaluate(probs, labels, class_names) -> dict:
    """Accuracy, loss, per-class precision/recall/F1, confusion matrix and per-image predictions of ``probs``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = np.asarray(labels)
    pred = probs.argmax(axis=1)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0))))
    ids = list(range(len(class_names)))
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    return {
        "num_images": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "loss": loss,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
        # per image, in the split's order: paired tests between runs (McNemar) need them
        "labels": y.tolist(),
        "predictions": pred.tolist(),
    }


def evaluate_best(model: keras.Model, data: DataSplits) -> tuple:
    """metrics.json's evaluation of the best checkpoint: ``{"val": ..., "test": ...}``, and the test probabilities.

    Validation chose the checkpoint, so its number is optimistic; the test
    split, never seen in training or selection, gives the reported accuracy.
    A study's final model has no test split (every labelled image trained it): its ``test`` is None.
    """
    model = inference_model(model)  # BatchNorm folded: the same probabilities to float32 rounding, faster
    val = evaluate(model.predict(data.val, verbose=0), data.val_labels, data.class_names)
    if not data.num_test:
        return {"class_names": data.class_names, "val": val, "test": None}, None
    test_probs = model.predict(data.test, verbose=0)
    test = evaluate(test_probs, data.test_labels, data.class_names)
    return {"class_names": data.class_names, "val": val, "test": test}, test_probs


def top_losses(data: DataSplits, probs, k: int = 16):
    """The ``k`` misclassified test images with the highest loss, with their labels."""
    y = data.test_labels
    pred = probs.argmax(axis=1)
    p_true = probs[np.arange(len(y)), y]
    wrong = np.flatnonzero(pred != y)
    chosen = wrong[np.argsort(p_true[wrong], kind="stable")][:k]
    images, offset, want = {}, 0, set(chosen.tolist())
    for x, _ in data.test:
        n = int(x.shape[0])
        for i in range(offset, offset + n):
            if i in want:
                images[i] = x[i - offset].numpy()
        offset += n
        if len(images) == len(want):
            break
    return [images[i] for i in chosen], y[chosen], pred[chosen], p_true[chosen]


def write_evaluation(out: str, exp, data: DataSplits, probs, metrics: dict, history: dict, timings: dict) -> None:
    """confusion.png and top_losses.png (test split) in the run directory and in TensorBoard; HParams."""
    tb_dir = os.path.join(out, rundir.TB)
    best, test = history["best"], metrics["test"]
    if test is None:  # a final model: no test split, so no test pictures; its estimate is the cross-validation's
        return
    title = (
        f"{exp.name}: best checkpoint (epoch {best['epoch']}, {best['phase']}) on the test split, accuracy {test['accuracy']:.4f}"
    )
    cm_png = figures.confusion_png(test["confusion_matrix"], data.class_names, title)
    imgs, true, pred, p_true = top_losses(data, probs)
    tl_png = figures.top_losses_png(imgs, true, pred, p_true, data.class_names, f"{exp.name}: top losses (test)")
    fsio.write_bytes(os.path.join(out, rundir.CONFUSION), cm_png)
    fsio.write_bytes(os.path.join(out, rundir.TOP_LOSSES), tl_png)
    tensorboard.write_images(tb_dir, best["epoch"] - 1, {"confusion_matrix": cm_png, "top_losses": tl_png})
    last = history["epochs"][-1]
    final = {
        "hparams/best_val_accuracy": best["val_accuracy"],
        "hparams/test_accuracy": test["accuracy"],
        "hparams/best_epoch": best["epoch"],
        "hparams/final_val_loss": last.get("val_loss", float("nan")),
        "hparams/final_train_loss": last.get("loss", float("nan")),
        "hparams/train_seconds": timings["train_seconds"],
    }
    tensorboard.write_hparams(tb_dir, exp, final, step=last["epoch"] - 1)

"""The Keras objects of a phase's recipe (:class:`kerasxfer.optim_config.OptimConfig`): optimiser, schedule, loss.

* :class:`PhaseSchedule`: the learning rate of :func:`kerasxfer.optim_config.learning_rate`
  as a function of the optimiser's own step counter, so a resumed phase
  (its ``iterations`` restored) continues the curve exactly;
* :func:`stage_multipliers`: each trainable variable's share of the rate
  under ``lr_stage_decay`` (the head 1, the top stage D, the next D², ...);
* :func:`make_optimizer`: Adam, AdamW or SGD (momentum 0.9, Nesterov) with
  the schedule, gradient clipping, EMA and, when some multiplier is not 1,
  per-variable rates (the optimiser's ``update_step`` and decoupled weight
  decay see ``lr * multiplier``);
* :func:`make_loss`: cross-entropy with label smoothing on integer or mixed labels.

Saved models never hold these objects (:mod:`kerasxfer.callbacks` saves an
uncompiled model), so ``keras.saving.load_model`` needs no kerasxfer import.
"""

from __future__ import annotations

import keras
from keras import ops

from kerasxfer import keras_compat
from kerasxfer.optim_config import OptimConfig, learning_rate


@keras.saving.register_keras_serializable(package="kerasxfer")
class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate at the optimiser's step: ``kerasxfer.optim_config.learning_rate`` over ``keras.ops``."""

    def __init__(self, peak: float, kind: str, total_steps: int, warmup_steps: int):
        self.peak, self.kind = float(peak), kind
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)

    def __call__(self, step):
        return learning_rate(ops, step, self.peak, self.kind, self.total_steps, self.warmup_steps)

    def get_config(self):
        return {"peak": self.peak, "kind": self.kind, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def stage_multipliers(model: keras.Model, variables, decay: float, num_stages: int) -> list:
    """``lr`` multiplier of each of ``variables``: D**i for backbone stage i from the top, D**(K+1) the stem, 1 else.

    ``model`` is a transfer model (its nested backbone names the stages
    through its family); variables outside the backbone (the head) get 1.
    """
    from kerasxfer.models.transfer import backbone_stages

    depth = {}
    for layer, s in backbone_stages(model):
        for w in layer.weights:
            depth[id(w)] = num_stages + 1 if s is None else num_stages - s
    return [float(decay ** depth[id(v)]) if id(v) in depth else 1.0 for v in variables]


_SCALED = {}


def _with_multipliers(base):
    """``base`` (an optimiser class) whose update and weight decay of variable k use ``lr * multipliers[k]``."""
    if base in _SCALED:
        return _SCALED[base]

    class Scaled(base):
        def set_multipliers(self, variables, multipliers):
            self._kx_scales = {keras_compat.variable_key(self, v): float(m) for v, m in zip(variables, multipliers)}

        def _kx_scale(self, variable):
            return self._kx_scales.get(keras_compat.variable_key(self, variable), 1.0)

        def update_step(self, gradient, variable, learning_rate):
            return super().update_step(gradient, variable, learning_rate * self._kx_scale(variable))

        def _apply_weight_decay(self, variables):
            if self.weight_decay is None:
                return
            for v in variables:
                if self._use_weight_decay(v):
                    lr = ops.cast(self.learning_rate, v.dtype) * self._kx_scale(v)
                    v.assign(v - v * ops.cast(self.weight_decay, v.dtype) * lr)

    Scaled.__name__ = Scaled.__qualname__ = base.__name__
    _SCALED[base] = Scaled
    return Scaled


def make_optimizer(cfg: OptimConfig, lr: float, steps: dict | None = None, variables=None, multipliers=None):
    """A fresh optimiser at peak rate ``lr`` for one phase.

    ``steps`` is :func:`kerasxfer.optim_config.schedule_steps`'s description (None:
    constant ``lr``); ``multipliers`` (with the ``variables`` they belong
    to, in order) scale the rate per variable.
    """
    rate = lr
    if steps is not None and (steps["kind"] != "constant" or steps["warmup_steps"]):
        rate = PhaseSchedule(lr, steps["kind"], steps["total_steps"], steps["warmup_steps"])
    common = {"learning_rate": rate}
    if cfg.grad_clip:
        common["global_clipnorm"] = cfg.grad_clip
    if cfg.ema is not None:
        common.update(use_ema=True, ema_momentum=cfg.ema)
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}
    kwargs = {
        "adam": {},
        "adamw": {"weight_decay": cfg.weight_decay},
        "sgd": {"momentum": 0.9, "nesterov": True, "weight_decay": cfg.weight_decay or None},
    }[cfg.optimizer]
    cls = classes[cfg.optimizer]
    scaled = multipliers is not None and any(m != 1.0 for m in multipliers)
    if not scaled:
        return cls(**common, **kwargs)
    opt = _with_multipliers(cls)(**common, **kwargs)
    opt.set_multipliers(list(variables), multipliers)
    return opt


@keras.saving.register_keras_serializable(package="kerasxfer")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against ``(1 - s) * one_hot + s / num_classes`` (Keras' sparse loss has no smoothing)."""

    def __init__(self, label_smoothing: float = 0.1, name: str = "sparse_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y = ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (-1,)), ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(y, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def make_loss(cfg: OptimConfig, soft_labels: bool) -> tuple:
    """(loss, accuracy metric) for integer labels, or one-hot/mixed ones when ``soft_labels``."""
    s = cfg.label_smoothing
    if soft_labels:  # MixUp/CutMix: one-hot, mixed labels
        return (keras.losses.CategoricalCrossentropy(label_smoothing=s), keras.metrics.CategoricalAccuracy(name="accuracy"))
    loss = SparseSmoothedCrossentropy(s) if s else keras.losses.SparseCategoricalCrossentropy()
    return loss, keras.metrics.SparseCategoricalAccuracy(name="accuracy")

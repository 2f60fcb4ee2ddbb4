"""tf.distribute strategies by name, and who writes the run directory.

``--batch_size`` is the *global* batch: with N replicas each one computes
``batch_size / N`` images per step and the gradients are summed across
replicas, so the same flags give the same training whatever the number of
devices.  The learning rate is not changed for you: if you raise the global
batch size to use more devices, scale ``--lr`` with it (the linear rule:
8x the batch, 8x the learning rate, with a short warm-up for large factors).

Under ``multi_worker`` every worker runs the same command; only the chief
(``task.type == "chief"``, or worker 0 when the cluster has no chief) writes
the run directory.  Every other worker writes into a temporary folder that
is removed when it finishes.  A run resumes on every worker from the chief's
``resume/`` state, so the run directory must be on a filesystem every worker
can read (or copied to each host before the rerun).

:func:`make_strategy` must run before any other TensorFlow op of the process
(``MultiWorkerMirroredStrategy`` configures the collective ops at start-up);
:func:`kerasxfer.training.run_experiment` calls it first.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from kerasxfer import keras_compat
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy ``name`` names.

    ``auto``: ``MirroredStrategy`` over several GPUs, ``OneDeviceStrategy``
    on one GPU (its datasets prefetch to the device), otherwise the default
    strategy.  ``one_device``: the first GPU, else the CPU.  ``mirrored``:
    every GPU of this host (every logical CPU device when there is no GPU:
    how the tests run it).  ``multi_worker``: ``MultiWorkerMirroredStrategy``
    from ``TF_CONFIG``.  ``tpu``: ``TPUStrategy`` on the TPU that
    ``TPU_NAME`` names (empty: the local TPU VM).
    """
    if name == "multi_worker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise UserError(
                "--strategy=multi_worker needs TF_CONFIG (the cluster and this worker's task): set it on every "
                'worker, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\'.'
            )
        try:
            json.loads(raw)
        except ValueError as e:
            raise UserError(f"TF_CONFIG is not valid JSON ({e}): fix it on this worker.") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(
                f"--strategy=tpu found no TPU ({first}): run on a TPU VM, or set TPU_NAME to the TPU's name."
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")  # initialises the runtime: after the two above
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if gpus:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    raise UserError(f"--strategy={name!r} is unknown: use auto, one_device, mirrored, multi_worker or tpu.")


def defer_keras_build(model, strategy: tf.distribute.Strategy) -> None:
    """Work around two Keras 3 bugs of ``fit`` under ``MultiWorkerMirroredStrategy`` with several workers.

    keras-team/keras#20585: (1) before training, Keras builds a model's
    metrics on the first batch, and gets a plain batch from a distributed
    one with ``strategy.reduce``, which fails across workers ("Attempt to
    convert a value (PerReplica...) to a Tensor").  A model whose own strategy
    is unset defers that build to the traced train step, and ``fit`` takes
    the strategy from the scope it runs in, so :mod:`kerasxfer.training`
    calls ``fit`` inside ``strategy.scope()``.  (2) Each step's logs (scalars)
    are averaged over replicas with ``strategy.reduce("MEAN", v, axis=0)``,
    which has no axis 0; :func:`_patch_keras_reduce` averages them without
    an axis, as Keras does on a single host.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        keras_compat.clear_distribute_strategy(model)
        _patch_keras_reduce()


def _patch_keras_reduce() -> None:
    def make(original, map_structure):
        def reduce_per_replica(values, strategy, reduction):
            if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
                return map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
            return original(values, strategy, reduction)

        return reduce_per_replica

    keras_compat.patch_reduce_per_replica(make)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory (always, except non-chief multi-worker tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None) if resolver is not None else None
    if not task_type:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and not has_chief and int(resolver.task_id) == 0


def describe(strategy: tf.distribute.Strategy) -> dict:
    """What environment.json records about the strategy (its class, replicas, and workers when several)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    out = {"strategy": type(strategy).__name__, "replicas": int(strategy.num_replicas_in_sync)}
    if resolver is not None and getattr(resolver, "task_type", None):
        out["workers"] = sum(len(v) for k, v in resolver.cluster_spec().as_dict().items() if k in ("chief", "worker"))
    return out

"""Where a study's or a sweep's runs train: one after the other in this process (``local``), or as tasks on a Ray
cluster (``ray``), several at once, each on a slice of the machines.

The run directory stays the unit.  A Ray task trains exactly the run the
local executor would, into the same folder (on a cluster that folder must be
on a filesystem every node shares), in a worker process of its own
(``max_calls=1``: nothing leaks from one run to the next) whose TensorFlow
uses the task's CPUs.  So resume, the run's lock, ``compare``, the report
and TensorBoard work unchanged, and a task whose worker dies (SIGKILL, a
lost node) is retried by Ray and continues from its last finished epoch.

Runs are submitted in waves: with folds, one fold at a time, so a study's
sequential rule (``after``) still stops before the folds it does not need;
a run written from another run's phases (:mod:`kerasxfer.forks`) is not
submitted beside its source, only trained afterwards if the fork did not
happen.  The driver prints one line per finished epoch of any run (which
run, which node and process) with the ETA of the whole study, from the
epochs the workers report to a small actor.

``ray`` is an extra (``pip install 'kerasxfer[ray]'``; ``make install``
installs it); without it ``--executor=ray`` is one sentence.  A local Ray
started here listens on loopback only, with the dashboard off, and none of
its processes outlives this one (:mod:`kerasxfer.ray_local`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import time
from typing import Optional

from kerasxfer import rundir
from kerasxfer.datasets import source_of
from kerasxfer.errors import UserError

log = logging.getLogger("kerasxfer")

EXECUTORS = ("local", "ray")
#: CPUs a run takes on Ray unless told: measured on 2 cores (README, make bench SECTIONS=executor), one run per
#: core finishes a study sooner than one run on every core, since one small-batch run leaves cores idle.
DEFAULT_CPUS_PER_RUN = 1.0
#: How often the driver reads the workers' epoch reports while it waits (seconds).
POLL_S = 2.0


@dataclasses.dataclass
class RayConfig:
    """How runs go to Ray: the cluster (None: ``RAY_ADDRESS``, else a local Ray on 127.0.0.1) and each run's
    resources."""

    address: Optional[str] = None
    cpus_per_run: float = DEFAULT_CPUS_PER_RUN
    gpus_per_run: float = 0.0

    def validate(self) -> "RayConfig":
        for name in ("cpus_per_run", "gpus_per_run"):
            v = getattr(self, name)
            bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            if bad or v < 0 or (name == "cpus_per_run" and v == 0):
                raise UserError(
                    f"--{name}={v} must be a finite {'positive' if name == 'cpus_per_run' else 'non-negative'} "
                    "number (a fraction shares a CPU or GPU between runs)."
                )
        return self


def check_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        raise UserError(
            "--executor=ray needs Ray, which is not installed: pip install 'kerasxfer[ray]' (make "
            "install does), or use --executor=local."
        )


def connect(cfg: RayConfig):
    """``ray`` connected to ``cfg.address`` (or ``RAY_ADDRESS``), else to a local Ray started on 127.0.0.1."""
    check_ray()
    import ray

    if ray.is_initialized():
        return ray
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    if address in ("local",):
        address = None  # RAY_ADDRESS=local: the local Ray below, on loopback
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            from kerasxfer.ray_local import guard, loopback_only

            with loopback_only():  # every process of it listens on loopback (kerasxfer.ray_local)
                ray.init(
                    num_cpus=os.cpu_count(),
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    log_to_driver=True,
                    logging_level=logging.WARNING,
                )
            guard()  # and none outlives this process
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise UserError(
            f"{where} could not be reached ({str(e).strip().splitlines()[0][:160]}): start it (ray start "
            "--head) or pass --ray_address=HOST:PORT of a running one."
        ) from None
    log.info(
        "[ray] connected: %s CPUs, %s GPUs on %d node(s)",
        ray.cluster_resources().get("CPU", 0),
        ray.cluster_resources().get("GPU", 0),
        len([n for n in ray.nodes() if n.get("Alive")]),
    )
    try:
        check_feasible([n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")], cfg)
    except UserError:
        ray.shutdown()  # a local Ray started here stops with the sentence
        raise
    return ray


def _to_train(wave, runs, forked, overwrite: bool, sources, tag: str, progress) -> list:
    """The runs of ``wave`` to submit: not forked, and not finished on the images they are given now (those are
    said and counted as finished earlier)."""
    todo = []
    for i in wave:
        exp = runs[i][1]
        done = exp.out_dir in forked or (rundir.is_finished(exp.out_dir) and not overwrite and _same_data(exp, sources, tag))
        if not done:
            todo.append(i)
            continue
        log.info("[%s] run %d of %d: %s (%s): finished earlier", tag, i + 1, len(runs), exp.out_dir, runs[i][0])
        progress.start_run(i)
        progress.finish_run(i, trained=False)
    return todo


def _same_data(exp, sources, tag: str) -> bool:
    """Whether the finished run of ``exp`` was made on the images ``sources`` give it now (True without sources)."""
    if sources is None:
        return True
    from kerasxfer.run_files import data_changes

    changes = data_changes(exp.out_dir, sources.splits(exp).splits, exp)
    if changes:
        log.info("[%s] %s was trained on other images (%s): it trains again", tag, exp.out_dir, "; ".join(changes))
    return not changes


#: Seconds to wait for a Ray address to accept a connection (Ray itself retries an unreachable one for minutes).
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """One sentence, within :data:`CONNECT_TIMEOUT_S`, when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not accept
    a connection; ``auto`` and other forms are left to Ray."""
    import socket

    hostport = address[len("ray://") :] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserError(
            f"the Ray cluster at {address} could not be reached ({e.strerror or type(e).__name__}, within "
            f"{CONNECT_TIMEOUT_S:g} s): start it (ray start --head) or pass --ray_address=HOST:PORT of a running one."
        ) from None


def check_feasible(nodes: list, cfg: RayConfig) -> None:
    """One sentence when no node of the cluster (``nodes``: each node's resources) has the CPUs and GPUs one run
    asks for: Ray would hold such a task forever, without a word."""
    need = {"CPU": cfg.cpus_per_run, "GPU": cfg.gpus_per_run}
    if any(all(n.get(k, 0) >= v for k, v in need.items()) for n in nodes):
        return
    most = {k: max((n.get(k, 0) for n in nodes), default=0) for k in need}
    raise UserError(
        f"no node of the Ray cluster has {cfg.cpus_per_run:g} CPU(s) and {cfg.gpus_per_run:g} GPU(s) for one run (the "
        f"largest has {most['CPU']:g} CPUs and {most['GPU']:g} GPUs), so every run would wait forever: lower "
        "--cpus_per_run/--gpus_per_run, or add a node that has them."
    )


def waves(runs, forks: dict) -> list:
    """The run indices in submission waves: one per fold (or one), each followed by the fork targets whose
    source is in it (they train only if their fork did not happen)."""
    by_fold = {}
    for i, (_, exp, _) in enumerate(runs):
        by_fold.setdefault(exp.data.fold if exp.data.folds > 1 else 0, []).append(i)
    targets = {j for js in forks.values() for j in js}
    out = []
    for fold in sorted(by_fold):
        idx = by_fold[fold]
        out.append([i for i in idx if i not in targets])
        late = [i for i in idx if i in targets]
        if late:
            out.append(late)
    return out


def run_series_ray(
    runs,
    source_args: dict,
    tag: str,
    cfg: RayConfig,
    overwrite: bool = False,
    verbose: int = 0,
    after=None,
    forks=None,
    sources=None,
) -> None:
    """:func:`kerasxfer.series.run_series` on Ray: the same runs into the same folders, several at once.

    ``source_args``: how a worker rebuilds the study's shared sources
    (:class:`kerasxfer.data.SharedSources`'s arguments); ``sources``: the driver's own, with which a run found
    finished is checked against the images it was made on before it is skipped (one made on other images is
    submitted and trained again, as the local executor does).
    """
    from kerasxfer.progress import StudyProgress, phases_of

    if any(source_of(exp.data.dataset).in_process for _, exp, _ in runs):
        raise UserError(
            "--executor=ray trains on data its workers can read (a folder, a CSV/TSV table, digits or "
            "tfds); arrays handed over from Python live in this process: use executor='local'."
        )
    ray = connect(cfg.validate())
    forks = forks or {}
    progress = StudyProgress([{"label": label, "phases": phases_of(exp, n)} for label, exp, n in runs], tag=tag)
    sink = _sink_class(ray).remote()
    task = ray.remote(max_calls=1)(_train_task).options(
        num_cpus=cfg.cpus_per_run, num_gpus=cfg.gpus_per_run, max_retries=3, retry_exceptions=False
    )
    forked = set()
    for wave in waves(runs, forks):
        todo = _to_train(wave, runs, forked, overwrite, sources, tag, progress)
        pending = {}
        for i in todo:
            label, exp, _ = runs[i]
            targets = [runs[j][1] for j in forks.get(i, ())]
            log.info("[%s] run %d of %d: %s (%s) submitted", tag, i + 1, len(runs), exp.out_dir, label)
            pending[
                task.remote(
                    i, exp, targets, source_args, sink, overwrite and exp.out_dir not in forked, verbose, cfg.cpus_per_run
                )
            ] = i
        _wait(ray, pending, sink, progress, runs, tag, forked, cfg)
        if after is not None and after(max(wave)):
            log.info("[%s] the runs after run %d are not needed", tag, max(wave) + 1)
            return


def _wait(ray, pending: dict, sink, progress, runs, tag: str, forked: set, cfg: RayConfig) -> None:
    """Until every task of ``pending`` has finished: the workers' epoch lines, each run's end; a user error in
    a run ends the study with that run's sentence."""
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cfg.cpus_per_run, 1e-9)))
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        _report(ray, sink, progress, runs, tag, slots)
        for ref in done:
            i = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:  # the task failed beyond its retries (a node lost for good, OOM)
                text = str(e).strip().splitlines()
                result = {
                    "error": f"{runs[i][1].out_dir} failed on Ray after its retries ({type(e).__name__}: "
                    f"{(text[-1] if text else '')[:160]}): every finished epoch is kept there; run the "
                    "same command again to continue."
                }
            _report(ray, sink, progress, runs, tag, slots)
            if result.get("error"):
                for other in pending:
                    ray.cancel(other, force=True)
                raise UserError(result["error"], exit_code=result.get("exit_code", 2))
            forked.update(result.get("forked", ()))
            progress.finish_run(i, trained=True)
            log.info(
                "[%s] run %d of %d (%s) finished on %s: test accuracy %.4f%s",
                tag,
                i + 1,
                len(runs),
                runs[i][0],
                result["where"],
                result["test_accuracy"],
                f" (continued after epoch {result['continued']}: an earlier worker was lost)" if result.get("continued") else "",
            )


def _report(ray, sink, progress, runs, tag: str, slots: int) -> None:
    """One line per epoch a worker reported: which run, on which node and process, and the study's time left."""
    for i, phase, seconds, where in ray.get(sink.drain.remote()):
        progress.epoch_end(i, phase, seconds, where=where, at_once=min(slots, len(runs)))


def _sink_class(ray):
    @ray.remote(num_cpus=0)
    class EpochSink:
        """Where workers report finished epochs; the driver drains it while it waits."""

        def __init__(self):
            self.items = []

        def epoch(self, index, phase, seconds, where):
            self.items.append((index, phase, seconds, where))

        def drain(self):
            out, self.items = self.items, []
            return out

    return EpochSink


def _train_task(index: int, exp, fork_targets, source_args: dict, sink, overwrite: bool, verbose: int, cpus: float) -> dict:
    """One run in a Ray worker process of its own: TensorFlow on the task's CPUs, the study's data rebuilt from
    the shared filesystem, the run trained (or continued) as the local executor would."""
    import socket

    import tensorflow as tf

    threads = max(1, int(cpus))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    import keras
    import ray

    from kerasxfer.data import SharedSources
    from kerasxfer.forks import ForkAfterPhase
    from kerasxfer.progress import phase_of
    from kerasxfer.training import run_experiment

    node = ray.get_runtime_context().get_node_id()[:8]
    where = f"node {node} ({socket.gethostname()}) pid {os.getpid()}"
    phase_of_epoch = phase_of(exp)

    class _Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            sink.epoch.remote(index, phase_of_epoch(epoch), time.monotonic() - self._t0, where)

    from kerasxfer.resume import saved_epoch

    continued = 0 if overwrite else saved_epoch(exp.out_dir)  # > 0: a retry after a lost worker
    try:
        sources = SharedSources(**source_args)
        data = sources.splits(exp)
        fork = ForkAfterPhase(exp.out_dir, [(t, data) for t in fork_targets], overwrite)
        metrics = run_experiment(
            exp,
            data=data,
            verbose=verbose,
            overwrite=overwrite,
            callbacks=[_Report()] + ([fork] if fork.targets else []),
            other_data="retrain",
        )
    except UserError as e:
        return {"error": f"{exp.out_dir}: {e}", "exit_code": e.exit_code, "where": where}
    return {"test_accuracy": metrics["test"]["accuracy"], "forked": fork.forked, "where": where, "continued": continued}

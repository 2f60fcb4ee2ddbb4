"""Study-level progress: one line per epoch saying how far the whole study is and how long it has left.

    [study] run 2 of 3 (transfer), epoch 7/18, study 41 % done, about 6 min left

The estimate comes from this machine's measured seconds per training image:
each phase kind (network, image size, what trains, cached features or not)
is timed as its epochs finish, and the epochs still to come are priced at
the speed of their own kind, or, before that kind has run, at the mean speed
of the kinds measured so far (cached-feature epochs at the cached speed).
Each finished run also measures the time spent outside epochs (building,
loading weights, evaluation), charged to every run still to come.  Within
one phase the estimate never rises (a slower epoch cannot make the study
look further from its end than the previous line said, minus the time
since); at a new phase it is computed afresh.  No TensorFlow here except the
Keras callback that :meth:`StudyProgress.callback` builds.
"""

from __future__ import annotations

import logging
import statistics
import time

log = logging.getLogger("kerasxfer")


#: Epochs a phase that trains until converged is assumed to take, until one of its kind has converged here.
EXPECTED_CONVERGED = 120


def phases_of(exp, num_train: int) -> list:
    """The progress model of an experiment: ``(kind, epochs, images per epoch, cached)`` per phase.

    A phase that trains until converged (a patience) counts :data:`EXPECTED_CONVERGED` epochs within its
    minimum and cap; its kind's last element is True, and once a run of that kind has converged, the
    others are priced at the epochs it took (:meth:`StudyProgress.finish_run`)."""
    m = exp.model
    out = []
    for p in exp.phases:
        cached = exp.uses_cached_features(p)
        epochs = p.epochs if not p.patience else min(p.epochs, max(p.min_epochs, EXPECTED_CONVERGED))
        out.append(
            (
                (m.display_name, m.weights is None, exp.data.image_size, p.trainable, cached, p.patience > 0),
                epochs,
                num_train,
                cached,
            )
        )
    return out


def phase_of(exp):
    """``epoch (0-based) -> index of its phase`` for ``exp`` (the planned spans of :mod:`kerasxfer.phases`)."""
    from kerasxfer.phases import phase_spans

    spans = phase_spans(exp.phases, {"phases": []})
    return lambda epoch: next(s.index for s in spans if epoch < s.last)


#: Seconds per run outside its epochs, assumed until a run has measured it.
DEFAULT_OVERHEAD_S = 10.0
#: A head-only epoch on cached features against one through the network, until both have been measured.
CACHED_SHARE = 0.02


def _minutes(seconds: float) -> str:
    if seconds < 5:
        return "almost done"
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s left"
    return f"about {seconds / 60:.0f} min left"


class StudyProgress:
    """The progress of a list of runs, each a list of phases ``(kind, epochs, images per epoch, cached)``.

    ``label`` names each run in the lines; ``now`` is the clock (tests pass their own).  In a Jupyter kernel
    the lines go to one live display instead (:mod:`kerasxfer.notebook`; the log keeps them at DEBUG).
    """

    def __init__(self, runs: list, now=time.monotonic, tag: str = "study"):
        from kerasxfer.notebook import live_display

        self.runs, self.now, self.tag = runs, now, tag
        self.live = live_display(tag)
        self.done = [[0] * len(r["phases"]) for r in runs]  # epochs done per run and phase
        self.per_image: dict[str, list] = {}  # phase kind -> measured seconds per training image, per epoch
        self.overheads: list[float] = []
        self.converged: dict[str, list] = {}  # kind of a phase trained until converged -> its epochs in finished runs
        self.lines: list[tuple[str, float]] = []  # (the line, seconds left it said)
        self._shown: tuple | None = None  # (run, phase, seconds left, when)
        self._run_start = None
        self._epoch_seconds = 0.0
        self._spent = 0.0
        self._pct = 0.0

    # ---------------------------------------------------------- bookkeeping
    def set_run(self, index: int, phases: list) -> None:
        """Run ``index`` trains ``phases`` after all (a sweep sets a time budget just before it starts)."""
        self.runs[index]["phases"] = phases
        self.done[index] = [0] * len(phases)

    def start_run(self, index: int, epochs_done: int = 0) -> None:
        """Run ``index`` starts (after ``epochs_done`` epochs of an earlier, interrupted attempt)."""
        left = epochs_done
        for p, (_, epochs, _, _) in enumerate(self.runs[index]["phases"]):
            self.done[index][p] = min(epochs, left)
            left -= self.done[index][p]
        self._run_start, self._epoch_seconds = self.now(), 0.0

    def finish_run(self, index: int, trained: bool) -> None:
        """Run ``index`` is finished; when it trained here, its time outside epochs is measured, and the epochs
        its converging phases took price those of the runs to come."""
        for p, (kind, _, _, _) in enumerate(self.runs[index]["phases"]):
            if trained and kind[-1] is True and self.done[index][p]:
                self.converged.setdefault(kind, []).append(self.done[index][p])
        self.done[index] = [epochs for _, epochs, _, _ in self.runs[index]["phases"]]
        if trained and self._run_start is not None:
            self.overheads.append(max(0.0, self.now() - self._run_start - self._epoch_seconds))

    def epoch_end(self, index: int, phase: int, seconds: float, where: str = "", at_once: int = 1) -> str:
        """One epoch of phase ``phase`` of run ``index`` took ``seconds``: record it, return (and log) the line.

        ``where``: the worker that trained it (Ray); ``at_once``: how many runs train at the same time (the
        time left is the work left shared among them)."""
        kind, epochs, images, _ = self.runs[index]["phases"][phase]
        self.per_image.setdefault(kind, []).append(seconds / max(1, images))
        self.done[index][phase] += 1
        self._epoch_seconds += seconds
        self._spent += seconds
        left = self._clamped(index, phase, self.seconds_left(index) / max(1, at_once))
        # a converging phase's epochs are an estimate: one that runs past it counts what it ran, so the line
        # never reads 'epoch 153/140'
        total_epochs = sum(max(e, d) for (_, e, _, _), d in zip(self.runs[index]["phases"], self.done[index]))
        spent = self.seconds_spent()
        pct = 100.0 * spent / (spent + left) if spent + left > 0 else 100.0
        self._pct = pct = max(pct, self._pct)  # an estimate, but the share done never goes back
        line = (
            f"[{self.tag}] run {index + 1} of {len(self.runs)} ({self.runs[index]['label']})"
            f"{' on ' + where if where else ''}, epoch {sum(self.done[index])}/{total_epochs}, {self.tag} "
            f"{pct:.0f} % done, {_minutes(left)}" + (f" ({at_once} runs at once)" if at_once > 1 else "")
        )
        self.lines.append((line, left))
        if self.live is not None:
            self.live.update(pct, line)
            log.debug(line)
        else:
            log.info(line)
        return line

    # ------------------------------------------------------------- estimate
    def _speed(self, kind, cached: bool):
        """Seconds per training image of a phase kind: its own measurement, else a similar one, else None."""
        if kind in self.per_image:
            return statistics.median(self.per_image[kind])
        similar = [statistics.median(v) for k, v in self.per_image.items() if self._cached(k) == cached]
        return statistics.fmean(similar) if similar else None

    def _cached(self, kind) -> bool:
        for r in self.runs:
            for k, _, _, cached in r["phases"]:
                if k == kind:
                    return cached
        return False

    def seconds_left(self, current: int) -> float:
        """Epochs still to train, priced at their kind's speed, plus the time outside epochs of the runs to come."""
        left = 0.0
        for i, r in enumerate(self.runs):
            for p, (kind, epochs, images, cached) in enumerate(r["phases"]):
                if kind[-1] is True and kind in self.converged and i > current:
                    epochs = statistics.median(self.converged[kind])
                todo = epochs - self.done[i][p]
                if todo <= 0:
                    continue
                speed = self._speed(kind, cached)
                if speed is None:  # nothing of its sort measured yet: price it like the phases measured
                    speed = statistics.fmean(statistics.median(v) for v in self.per_image.values())
                    speed *= CACHED_SHARE if cached else 1.0 / CACHED_SHARE
                left += todo * images * speed
            if i > current and sum(self.done[i]) < sum(e for _, e, _, _ in r["phases"]):
                left += statistics.fmean(self.overheads) if self.overheads else DEFAULT_OVERHEAD_S
        return left

    def seconds_spent(self) -> float:
        """Time this process has spent on the study's runs so far (epochs, and finished runs' overheads)."""
        return self._spent + sum(self.overheads)

    def _clamped(self, index: int, phase: int, left: float) -> float:
        now = self.now()
        if self._shown is not None and self._shown[:2] == (index, phase):
            left = min(left, max(0.0, self._shown[2] - (now - self._shown[3])))
        self._shown = (index, phase, left, now)
        return left

    # -------------------------------------------------------------- keras
    def callback(self, index: int, phase_of_epoch):
        """A Keras callback for run ``index``; ``phase_of_epoch(epoch)`` -> the phase index of a 0-based epoch."""
        import keras

        progress = self

        class _Progress(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = progress.now()

            def on_epoch_end(self, epoch, logs=None):
                progress.epoch_end(index, phase_of_epoch(epoch), progress.now() - self._t0)

        return _Progress()

"""The study's progress lines, on a clock the test drives (no TensorFlow, no training)."""

import re

from kerasxfer.progress import StudyProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _runs():
    return [
        {"label": "scratch", "phases": [("cnn", 4, 100, False)]},
        {"label": "transfer", "phases": [("head", 3, 100, True), ("stages", 3, 100, False)]},
    ]


def test_one_line_per_epoch_with_a_falling_estimate_within_a_run():
    clock = Clock()
    p = StudyProgress(_runs(), now=clock)
    p.start_run(0)
    lefts = []
    for seconds in (5.0, 3.0, 3.2, 2.9):  # the first epoch traces the graph; later ones vary a little
        clock.t += seconds
        line = p.epoch_end(0, 0, seconds)
        lefts.append(p.lines[-1][1])
        assert line.startswith(f"[study] run 1 of 2 (scratch), epoch {len(lefts)}/4, study ")
    assert all(b < a for a, b in zip(lefts, lefts[1:])), lefts
    assert len(p.lines) == 4


def test_share_done_never_goes_back_and_ends_at_100():
    clock = Clock()
    p = StudyProgress(_runs(), now=clock)
    shares = []
    for run, phases in ((0, [(0, 4, 3.0)]), (1, [(0, 3, 0.1), (1, 3, 9.0)])):
        p.start_run(run)
        for phase, epochs, seconds in phases:
            for _ in range(epochs):
                clock.t += seconds
                p.epoch_end(run, phase, seconds)
                shares.append(int(re.search(r"study (\d+) % done", p.lines[-1][0]).group(1)))
        clock.t += 4.0  # evaluation and pictures
        p.finish_run(run, trained=True)
    assert shares == sorted(shares) and shares[-1] == 100
    assert p.lines[-1][0].endswith("almost done")


def test_unmeasured_runs_are_priced_like_measured_ones_plus_their_overhead():
    clock = Clock()
    p = StudyProgress(_runs(), now=clock)
    p.start_run(0)
    clock.t += 2.0
    p.epoch_end(0, 0, 2.0)  # 0.02 s per image
    # scratch: 3 epochs x 2 s; transfer: 3 cached epochs at 2 % of that, 3 at the same speed, + 10 s overhead
    assert abs(p.seconds_left(0) - (3 * 2.0 + 3 * 2.0 * 0.02 + 3 * 2.0 + 10.0)) < 1e-9


def test_a_resumed_run_counts_the_epochs_it_already_has():
    p = StudyProgress(_runs(), now=Clock())
    p.start_run(1, epochs_done=4)
    assert p.done[1] == [3, 1]
    assert p.epoch_end(1, 1, 1.0).startswith("[study] run 2 of 2 (transfer), epoch 5/6")


def test_a_phase_that_trains_until_converged_is_priced_at_the_epochs_it_took():
    """The frozen phase's cap (500) would make the estimate far too long: the first run's real count prices the rest."""
    clock = Clock()
    kind = ("lite0", False, 224, "head", True, True)  # the last element: it trains until converged
    runs = [{"label": f"transfer {k}", "phases": [(kind, 120, 100, True)]} for k in range(3)]
    p = StudyProgress(runs, now=clock)
    p.start_run(0)
    for _ in range(30):  # converged after 30 epochs of 1 s
        clock.t += 1.0
        p.epoch_end(0, 0, 1.0)
    before = p.seconds_left(0)
    p.finish_run(0, trained=True)
    assert before > 2 * 120 - 10  # two runs still priced at the assumed 120 epochs
    assert p.seconds_left(0) == 2 * 30 + 2 * p.overheads[0]  # now at the 30 epochs it took


def test_a_phase_past_its_estimated_epochs_counts_what_it_ran():
    """A converging phase is priced at 120 epochs until one has converged; the 130th epoch reads 130/150, not 130/140."""
    kind = ("lite0", False, 224, "head", True, True)
    runs = [{"label": "transfer", "phases": [(kind, 120, 100, True), (("lite0", True), 20, 100, False)]}]
    p = StudyProgress(runs, now=Clock())
    p.start_run(0)
    for _ in range(129):
        p.epoch_end(0, 0, 0.1)
    assert ", epoch 130/150," in p.epoch_end(0, 0, 0.1)
    assert ", epoch 131/150," in p.epoch_end(0, 1, 1.0)

"""The phase plan (kerasxfer.phases): epoch ranges from the phases and the history, and what is left to train."""

from kerasxfer.config import PhaseConfig
from kerasxfer.phases import next_phase, phase_spans

PHASES = [PhaseConfig("frozen", 3, 1e-3, "head"), PhaseConfig("unfrozen", 4, 1e-5, "stages:2")]


def _history(*records, **flags):
    return {"phases": list(records), **flags}


def test_a_fresh_run_trains_the_phases_on_one_epoch_axis():
    spans = phase_spans(PHASES, _history())
    assert [(s.index, s.first, s.last) for s in spans] == [(0, 0, 3), (1, 3, 7)]
    assert next_phase(PHASES, _history(), 0).index == 0
    assert next_phase(PHASES, _history(), 3).index == 1


def test_a_run_resumed_inside_a_phase_continues_that_phase():
    span = next_phase(PHASES, _history(), 5)
    assert (span.index, span.first, span.last) == (1, 3, 7)  # epochs 6..7 are left; the phase began after 3


def test_early_stopping_moves_every_later_phase_forward():
    frozen = {"name": "frozen", "first_epoch": 1, "last_epoch": 2, "early_stopped": True, "planned_last_epoch": 3}
    spans = phase_spans(PHASES, _history(frozen))
    assert [(s.first, s.last) for s in spans] == [(0, 2), (2, 6)]
    assert next_phase(PHASES, _history(frozen), 2).first == 2


def test_nothing_is_left_when_done_stopped_or_out_of_time():
    assert next_phase(PHASES, _history(), 7) is None
    assert next_phase(PHASES, _history(stopped={"epoch": 2, "phase": "frozen"}), 1) is None
    assert next_phase(PHASES, _history(ended_early=True), 1) is None


def test_a_phase_of_zero_epochs_is_skipped():
    phases = [PhaseConfig("frozen", 0, 1e-3, "head"), PhaseConfig("unfrozen", 2, 1e-5, "stages:2")]
    span = next_phase(phases, _history(), 0)
    assert (span.index, span.first, span.last) == (1, 0, 2)

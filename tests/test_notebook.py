"""In Jupyter, one live progress display for the whole study; elsewhere, one log line per epoch.

A real Jupyter kernel (ipykernel, driven by jupyter_client as a notebook's front end would) runs a study's
progress bookkeeping and the test reads the messages a notebook would render (no TensorFlow, no training).
"""

import logging
import os

from kerasxfer.progress import StudyProgress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import os
os.environ.pop("KERASXFER_PROGRESS", None)
from kerasxfer.api import show_progress
from kerasxfer.progress import StudyProgress
show_progress()
runs = [{"label": "scratch", "phases": [("cnn", 3, 100, False)]}, {"label": "transfer", "phases": [("head", 2, 100, True)]}]
p = StudyProgress(runs)
for i, n in ((0, 3), (1, 2)):
    p.start_run(i)
    for _ in range(n):
        p.epoch_end(i, 0, 0.01)
    p.finish_run(i, trained=True)
import logging
logging.getLogger("kerasxfer").info("[study] verdict: an ordinary line")
os.environ["KERASXFER_PROGRESS"] = "lines"
q = StudyProgress(runs, tag="lines")
q.start_run(0)
q.epoch_end(0, 0, 0.01)
print("updates", p.live.updates, q.live)
"""


def _run_in_kernel(code: str) -> list:
    """The iopub messages a notebook receives while a real kernel runs ``code``."""
    from jupyter_client.manager import start_new_kernel  # the dev extra installs it and ipykernel

    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "PYTHONPATH": ROOT}, startup_timeout=120)
    try:
        msg_id = kc.execute(code)
        messages = []
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return messages
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_in_a_jupyter_kernel_the_study_shows_one_live_display_instead_of_a_line_per_epoch():
    messages = _run_in_kernel(CODE)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert not errors, errors
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1  # one display for the whole study, drawn once...
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert len(updates) == 5 and {u["content"]["transient"]["display_id"] for u in updates} == {display_id}  # ...then redrawn
    last = updates[-1]["content"]["data"]["text/html"]
    assert "<progress value='100.0' max='100'" in last and "run 2 of 2 (transfer), epoch 2/2, study 100 % done" in last
    streams = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert "[study] run" not in streams  # no log line per epoch beside the display
    assert "[study] verdict: an ordinary line" in streams  # every other line is logged as before
    assert "[lines] run 1 of 2 (scratch), epoch 1/3" in streams  # KERASXFER_PROGRESS=lines: the lines again
    assert "updates 5 None" in streams


def test_outside_a_notebook_the_study_logs_one_line_per_epoch(caplog):
    p = StudyProgress([{"label": "scratch", "phases": [("cnn", 2, 100, False)]}])
    assert p.live is None
    p.start_run(0)
    with caplog.at_level(logging.INFO, logger="kerasxfer"):
        p.epoch_end(0, 0, 0.01)
    assert [r.getMessage() for r in caplog.records if "[study] run 1 of 1" in r.getMessage()]

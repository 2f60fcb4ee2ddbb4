"""The run directory and the resume state, in process: atomic writes, config diffs, what an existing folder means."""

import json
import os

import numpy as np
import pytest

from kerasxfer import fsio, recipes, rundir
from kerasxfer.errors import UserError


def test_atomic_path_replaces_only_on_success_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fsio.atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.json"]
    fsio.write_json(str(target), {"a": np.float32(0.5), "b": np.arange(3), "c": (1, 2), "d": np.int64(7)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": [1, 2], "d": 7}
    assert target.read_text().endswith("}\n") and os.listdir(tmp_path) == ["f.json"]


def test_temporary_name_keeps_the_extension(tmp_path):
    with fsio.atomic_path(str(tmp_path / "model.keras")) as tmp:
        assert tmp.endswith("model.keras") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "w").close()
    assert os.listdir(tmp_path) == ["model.keras"]


def test_config_differences_name_each_field_and_ignore_where_files_are():
    a = recipes.scratch(out_dir="a").to_dict()
    b = recipes.scratch(out_dir="b", widths=(8, 32), lr=1e-2).to_dict()
    b["data"]["cache_dir"] = "/elsewhere"
    diffs = rundir.config_differences(a, b)
    assert diffs == ["model.widths: [32, 64, 128] there, [8, 32] now", "phases.0.lr: 0.001 there, 0.01 now"]
    c = recipes.finetune(out_dir="a").to_dict()
    assert "phases.count: 1 there, 2 now" in rundir.config_differences(a, c)


def test_a_run_from_an_older_kerasxfer_continues_with_the_new_fields_at_their_defaults(tmp_path):
    """A config.json written before min_steps, class_weight and folds existed is still this run's config."""
    from kerasxfer.config import Experiment

    out = str(tmp_path / "run")
    cfg = recipes.scratch(out_dir=out).to_dict()
    old = json.loads(json.dumps(cfg))
    del old["min_steps"], old["optim"]["class_weight"], old["data"]["folds"], old["data"]["fold"]
    os.makedirs(os.path.join(out, rundir.RESUME))
    rundir.write_marker(out, "training")
    fsio.write_json(os.path.join(out, rundir.CONFIG), old)
    assert rundir.inspect_run_dir(out, cfg, complete=Experiment.complete) == "resume"
    with pytest.raises(UserError, match="min_steps: '<unset>' there, 0 now"):  # without the defaults: refused
        rundir.inspect_run_dir(out, cfg)


def test_inspect_run_dir_new_resume_finishing_finished_and_refused(tmp_path):
    out = str(tmp_path / "run")
    cfg = recipes.scratch(out_dir=out).to_dict()
    assert rundir.inspect_run_dir(out, cfg) == "new"
    os.makedirs(out)
    rundir.write_marker(out, "training")
    fsio.write_json(os.path.join(out, rundir.CONFIG), cfg)
    assert rundir.inspect_run_dir(out, cfg) == "new"  # a run, but no epoch finished
    os.makedirs(os.path.join(out, rundir.RESUME))
    assert rundir.inspect_run_dir(out, cfg) == "resume"
    fsio.write_json(os.path.join(out, rundir.METRICS), {})
    assert rundir.inspect_run_dir(out, cfg) == "finishing"  # evaluated, but a later output is missing
    rundir.write_marker(out, "finished")
    assert rundir.inspect_run_dir(out, cfg) == "finished" and rundir.is_finished(out)
    other = recipes.scratch(out_dir=out, epochs=3).to_dict()
    with pytest.raises(UserError, match=r"holds a run made with other settings \(phases.0.epochs: 10 there, 3 now\)"):
        rundir.inspect_run_dir(out, other)
    assert rundir.inspect_run_dir(out, other, overwrite=True) == "new"
    (tmp_path / "run" / rundir.CONFIG).write_text("{not json")
    with pytest.raises(UserError, match="is unreadable"):
        rundir.inspect_run_dir(out, cfg)


def test_a_folder_that_is_not_a_run_is_refused_and_never_emptied(tmp_path):
    out = tmp_path / "mine"
    (out / "tb").mkdir(parents=True)
    (out / "tb" / "notes.txt").write_text("n")
    cfg = recipes.scratch(out_dir=str(out)).to_dict()
    with pytest.raises(UserError, match="is not empty and is not a kerasxfer run .*holds tb.*pass --overwrite"):
        rundir.inspect_run_dir(str(out), cfg)
    with pytest.raises(UserError, match="holds tb, which kerasxfer did not write"):
        rundir.inspect_run_dir(str(out), cfg, overwrite=True)
    rundir.remove_run_outputs(str(out))
    assert (out / "tb" / "notes.txt").read_text() == "n"
    (out / "tb" / "notes.txt").rename(out / "notes.txt")
    (out / "tb").rmdir()
    assert rundir.inspect_run_dir(str(out), cfg, overwrite=True) == "new"  # beside the user's files
    fsio.write_json(str(out / rundir.CONFIG), {"my": "settings"})  # a config.json that is not a run's
    assert not rundir.is_run(str(out))
    fsio.write_json(str(out / rundir.CONFIG), cfg)
    fsio.write_json(str(out / rundir.HISTORY), {})
    assert rundir.is_run(str(out)) and not rundir.is_finished(str(out))  # a run made before the marker


def test_lock_refuses_a_second_writer_and_cleans_a_folder_it_made(tmp_path):
    out = str(tmp_path / "new")
    with rundir.locked(out):
        with pytest.raises(UserError, match=f"is being written by another kerasxfer process \\(pid {os.getpid()}\\)"):
            with rundir.locked(out):
                pass
    assert not os.path.exists(out)  # it held nothing but the lock
    os.makedirs(out)
    with rundir.locked(out):
        (tmp_path / "new" / "x").write_text("x")
    assert sorted(os.listdir(out)) == ["x"]  # still no run (a refused folder, say): nothing of ours is left
    with rundir.locked(out):
        rundir.write_marker(out, "training")
    assert sorted(os.listdir(out)) == sorted([rundir.LOCK, rundir.MARKER, "x"])  # a run keeps its lock file


def test_remove_run_outputs_keeps_every_other_file(tmp_path):
    for name in rundir.RUN_OUTPUTS:
        if name in (rundir.TB, rundir.RESUME):
            (tmp_path / name).mkdir()
            (tmp_path / name / "x").write_text("x")
        else:
            (tmp_path / name).write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mine").mkdir()
    rundir.remove_run_outputs(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["mine", "notes.txt"]


def test_resume_state_round_trips_model_and_optimizer_variables(tmp_path):
    import keras

    from kerasxfer.resume import ResumeState

    def model():
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return m

    a = model()
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    a.fit(x, y, epochs=2, verbose=0)
    state = ResumeState(str(tmp_path))
    assert not state.found and state.epoch == 0
    history, timings = {"epochs": [1, 2]}, {"train_seconds": 1.0}
    state.save(2, a, a.optimizer, history, timings)
    state.save(3, a, a.optimizer, history, timings)
    assert sorted(os.listdir(tmp_path / "resume")) == [
        "state-2.json",
        "state-2.npz",
        "state-3.json",
        "state-3.npz",
        "state.json",
    ]  # the newest state and the one before it
    found = ResumeState(str(tmp_path))
    assert found.found and found.epoch == 3 and found.history == history and found.timings == timings
    b = model()
    found.restore(b, b)
    for va, vb in zip(a.variables + a.optimizer.variables, b.variables + b.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(va), keras.ops.convert_to_numpy(vb))
    wrong = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(2)])
    with pytest.raises(UserError, match="does not fit this model"):
        found.restore(wrong)
    found.clear()
    assert not os.path.exists(tmp_path / "resume") and not ResumeState(str(tmp_path)).found


def test_a_damaged_resume_state_falls_back_one_epoch_then_says_what_to_do(tmp_path):
    import keras

    from kerasxfer.resume import ResumeState

    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    m.compile(optimizer="adam", loss="mse")
    m.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    state = ResumeState(str(tmp_path))
    for epoch in (1, 2):
        state.save(epoch, m, m.optimizer, {"epochs": list(range(epoch))}, {})
    npz = tmp_path / "resume" / "state-2.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])  # truncated, as by a full disk
    found = ResumeState(str(tmp_path))
    assert found.found and found.epoch == 1 and found.history == {"epochs": [0]}
    (tmp_path / "resume" / "state-1.json").write_text('{"epoch": 1, "arr')
    with pytest.raises(UserError, match="resume state in .* is damaged .*pass --overwrite to start the run again"):
        ResumeState(str(tmp_path))


def test_a_file_where_a_folder_is_needed_is_named_not_the_temporary_file(tmp_path):
    from kerasxfer.errors import os_error_sentence

    (tmp_path / "models").write_text("a user's file")
    with pytest.raises(OSError) as e:
        with fsio.atomic_path(str(tmp_path / "models" / "w.h5")) as tmp:
            open(tmp, "wb").close()
    sentence = os_error_sentence(e.value)
    assert (
        sentence.startswith(f"{tmp_path / 'models'} is a file where a folder is needed (writing {tmp_path / 'models' / 'w.h5'})")
        and ".tmp-" not in sentence
    )
    assert (tmp_path / "models").read_text() == "a user's file"


def test_an_unwritable_cache_is_said_once_names_the_file_in_the_way_and_decodes_in_memory(tmp_path, caplog):
    import tensorflow as tf

    from kerasxfer.data.arrays import decode_all

    (tmp_path / "blocker").write_text("")
    x = np.zeros((3, 8, 8, 3), np.uint8)
    caplog.set_level("WARNING", "kerasxfer")
    for split in ("train", "val"):
        out = decode_all(x, lambda e: tf.identity(e), 8, cache_path=str(tmp_path / "blocker" / "c" / f"{split}.npy"))
        assert out.shape == (3, 8, 8, 3) and not isinstance(out, np.memmap)
    said = [r.getMessage() for r in caplog.records if "cache cannot be written" in r.getMessage()]
    assert said == [
        f"the decoded-image cache cannot be written to {tmp_path / 'blocker' / 'c'} "
        f"({tmp_path / 'blocker'} is a file, not a folder): decoding into memory instead"
    ]

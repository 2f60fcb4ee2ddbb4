"""Datasets that arrive as a CSV/TSV table of path,label[,split] or as arrays from Python."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kerasxfer
from kerasxfer.data.tables import read_table, table_source
from kerasxfer.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(epochs=1, image_size=16, widths="8", batch_size=16)
COLOURS = ("red", "green", "blue")


def _images(folder, n=45, seed=0):
    """``n`` small photos-to-be of three colour classes under ``folder/imgs``; returns (relative path, label) rows."""
    rng = np.random.default_rng(seed)
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        c = i % 3
        a = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
        a[..., c] += 180
        Image.fromarray(a).save(folder / "imgs" / f"{i}.png")
        rows.append((f"imgs/{i}.png", COLOURS[c]))
    return rows


def test_a_csv_table_trains_with_paths_relative_to_it_and_skips_a_missing_file(tmp_path):
    rows = _images(tmp_path / "set")
    table = tmp_path / "set" / "labels.csv"
    table.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows) + "imgs/gone.png,red\n")
    r = kerasxfer.scratch(str(table), out_dir=str(tmp_path / "run"), **TINY)
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["class_names"] == ["blue", "green", "red"]
    assert data["source"].startswith(f"table {table} (46 rows") and data["skipped_paths"] == ["imgs/gone.png"]
    assert all(s["fingerprint"] for s in data["splits"].values())
    assert 0.0 <= r.test_accuracy <= 1.0
    with pytest.raises(UserError, match="cannot be compared"):  # another dataset: not the same test images
        kerasxfer.compare(
            [r.run_dir, kerasxfer.scratch("digits", out_dir=str(tmp_path / "d"), **TINY).run_dir], out_dir=str(tmp_path / "cmp")
        )


def test_a_tsv_split_column_is_used_as_given_and_a_missing_split_is_carved(tmp_path):
    rows = _images(tmp_path)
    lines = [f"{p}\t{lab}\t{'test' if i % 5 == 0 else 'train'}" for i, (p, lab) in enumerate(rows)]
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    src = table_source(str(tmp_path / "t.tsv"), 0.2, 0.2, seed=0)
    assert sorted(src.test.keys) == sorted(p for i, (p, _) in enumerate(rows) if i % 5 == 0)
    assert len(src.val) > 0 and not set(src.val.keys) & set(src.test.keys)  # val carved from the train rows
    assert "carved from train" in src.description


@pytest.mark.parametrize(
    "text, says",
    [
        ("a.png,red,holdout\n", r"line 1: split 'holdout' is unknown"),
        ("a.png\n", r"line 1 is not path,label or path,label,split"),
        ("a.png,red\nb.png,blue\na.png,blue\n", r"lists 'a.png' twice \(lines 1 and 3\)"),
        ("path,label\n", "has no rows"),
        ("a.png,red\nb.png,blue\n./a.png,red\n", r"lists one file twice \('a.png', './a.png'\) \(lines 1 and 3\)"),
        ("a.png,red\nsub/../a.png,blue\n", r"one file twice .* could be trained on and tested on"),
        ("a\x00.png,red\n", r"line 1: the path holds a NUL byte"),
    ],
)
def test_a_malformed_table_is_one_sentence_naming_the_line(tmp_path, text, says):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(UserError, match=says):
        read_table(str(tmp_path / "t.csv"))


def test_a_row_naming_an_unreadable_system_file_is_a_skipped_bad_image(tmp_path):
    """/proc/self/mem aborted the whole run with "Input/output error: (no file named)"."""
    rows = _images(tmp_path, n=12)
    table = tmp_path / "t.csv"
    table.write_text("".join(f"{p},{lab}\n" for p, lab in rows) + "/proc/self/mem,red\n")
    src = table_source(str(table), 0.2, 0.2, 0)
    assert src.info["skipped_paths"] == ["/proc/self/mem"] and src.info["skipped_undecodable"] == 1
    assert len(src.train) + len(src.val) + len(src.test) == 12


def test_a_header_of_other_names_is_a_header_and_a_quoted_hash_is_a_path(tmp_path):
    (tmp_path / "t.csv").write_text('file,class\n# a comment\n"#x.png",red\nb.png,blue\n  # indented comment\n')
    assert read_table(str(tmp_path / "t.csv")) == ([("#x.png", "red", "train"), ("b.png", "blue", "train")], False)
    (tmp_path / "t.csv").write_text("a.png,red\nb.png,blue,holdout\n")
    with pytest.raises(UserError, match="line 2: split 'holdout'"):  # line numbers count the skipped lines too
        read_table(str(tmp_path / "t.csv"))


def test_one_file_under_an_absolute_and_a_relative_spelling_is_refused(tmp_path):
    """The leak of the fourth round: im0.png, ./im0.png and /abs/im0.png went to train and test (accuracy 1.0)."""
    (tmp_path / "t.csv").write_text(f"im0.png,a\nim1.png,b\n{tmp_path / 'im0.png'},a\n")
    with pytest.raises(UserError, match="lists one file twice"):
        read_table(str(tmp_path / "t.csv"))


def test_a_copy_of_an_image_is_used_once_and_under_two_labels_refused(tmp_path, caplog):
    from kerasxfer.data.tables import drop_copies

    rows = _images(tmp_path)
    (tmp_path / "imgs" / "copy.png").write_bytes((tmp_path / rows[0][0]).read_bytes())
    table = str(tmp_path / "t.csv")
    with caplog.at_level("INFO", logger="kerasxfer"):
        kept = drop_copies(table, [*rows, ("imgs/copy.png", rows[0][1], "train")])
    assert kept == rows and "1 row(s) repeat an earlier row's image byte for byte ('imgs/copy.png')" in caplog.text
    with pytest.raises(
        UserError,
        match=r"'imgs/0.png' \(label 'red'\) and 'imgs/copy.png' \(label 'blue'\) are "
        r"the same image \(identical bytes\) under two labels",
    ):
        drop_copies(table, [*rows, ("imgs/copy.png", "blue", "train")])
    # a FIFO or a missing file is left to the image check (skipped and counted, with its reason), never read here
    os.mkfifo(tmp_path / "imgs" / "fifo.png")
    assert drop_copies(table, [*rows, ("imgs/fifo.png", "red", ""), ("gone.png", "red", "")])[-2:] == [
        ("imgs/fifo.png", "red", ""),
        ("gone.png", "red", ""),
    ]


def test_a_missing_table_is_one_sentence_before_anything_runs(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "experiments.scratch", f"--dataset={tmp_path / 'none.csv'}", f"--out_dir={tmp_path / 'o'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        f"kerasxfer: error: --dataset='{tmp_path / 'none.csv'}' does not exist: pass a CSV/TSV file of path,label[,split] rows."
    )
    assert not (tmp_path / "o").exists()


def test_arrays_train_continue_under_their_content_name_and_refuse_other_arrays(tmp_path, caplog):
    rng = np.random.default_rng(1)
    y = np.array(COLOURS * 20)
    x = rng.uniform(0, 0.3, (60, 12, 12, 3)).astype(np.float32)  # floats in [0, 1]
    for i, lab in enumerate(y):
        x[i, ..., COLOURS.index(lab)] += 0.7
    a = kerasxfer.scratch((x, y), out_dir=str(tmp_path / "a"), **TINY)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["data"]["dataset"].startswith("arrays:")
    assert json.loads((tmp_path / "a" / "data.json").read_text())["class_names"] == ["blue", "green", "red"]
    caplog.set_level("INFO", "kerasxfer")
    again = kerasxfer.scratch((x.copy(), list(y)), out_dir=str(tmp_path / "a"), **TINY)  # equal content
    assert again.metrics == a.metrics and any("is already finished" in r.getMessage() for r in caplog.records)
    other = kerasxfer.scratch(((x * 255).astype(np.uint8)[::-1], y[::-1]), out_dir=str(tmp_path / "b"), **TINY)
    with pytest.raises(UserError, match="cannot be compared"):
        kerasxfer.compare([a.run_dir, other.run_dir], out_dir=str(tmp_path / "cmp"))


def test_arrays_that_are_not_images_are_one_sentence():
    with pytest.raises(UserError, match=r"images of shape \(5, 3\) are not images"):
        kerasxfer.scratch((np.zeros((5, 3)), np.zeros(5)))
    with pytest.raises(UserError, match="labels of shape .* do not match 5 images"):
        kerasxfer.scratch((np.zeros((5, 8, 8, 3)), np.zeros(4)))


def test_array_pixels_follow_the_stated_rule_and_doubtful_ones_are_one_sentence(caplog):
    from kerasxfer.datasets import register_arrays, registered_arrays

    y = np.array([0, 1] * 4)
    x16 = np.random.default_rng(0).integers(0, 65536, (8, 4, 4, 3)).astype(np.uint16)
    with caplog.at_level("INFO", logger="kerasxfer"):
        got = registered_arrays(register_arrays(x16, y))[0]
    assert got.dtype == np.uint8 and np.array_equal(got, np.round(x16 * (255 / 65535)).astype(np.uint8))
    assert "uint16 images scaled to [0, 255]" in caplog.text  # no longer clipped at 255
    unit = np.random.default_rng(1).uniform(0, 1, (8, 4, 4, 3))
    assert registered_arrays(register_arrays(unit, y))[0].max() > 200  # [0, 1] floats: bright stays bright
    unit[0, 0, 0, 0] = 1.5  # one stray value used to make every image near black
    with pytest.raises(UserError, match=r"values up to 1.5 \(1 of 384 above 1\) fit neither \[0, 1\] nor"):
        register_arrays(unit, y)
    with pytest.raises(UserError, match="negative values"):
        register_arrays(-unit, y)


@pytest.mark.parametrize(
    "labels,says",
    [
        ([0, 1, 2, float("nan")], r"the label nan \(float\) is not a class"),
        ([0, 1, None, 1], r"the label None \(NoneType\) is not a class"),
        ([1, "1", 2, "2"], r"mix strings and numbers \(e.g. '1' and 1\)"),
        ([True, False, True, False], r"the label True \(bool\)"),
        ([0, 1, 2], r"do not match 4 images"),
    ],
)
def test_array_labels_are_integers_or_strings_and_nothing_else(labels, says):
    from kerasxfer.datasets import register_arrays

    with pytest.raises(UserError, match=says):
        register_arrays(np.zeros((4, 4, 4, 3), np.uint8), labels)


def test_ragged_empty_and_too_large_arrays_are_one_sentence(monkeypatch):
    from kerasxfer import fsio
    from kerasxfer.datasets import register_arrays

    with pytest.raises(UserError, match="ragged list"):
        register_arrays([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))], [0, 1])
    with pytest.raises(UserError, match="of at least one image"):
        register_arrays(np.zeros((0, 4, 4, 3), np.uint8), [])
    monkeypatch.setattr(fsio, "available_memory", lambda: 1000)
    with pytest.raises(UserError, match=r"needs 0.0 GiB of memory, more than the 0.0 GiB this machine has free"):
        register_arrays(np.zeros((2, 40, 40, 3), np.float64), [0, 1])

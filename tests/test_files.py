"""files/: the one atomic writer (files, paths, directories), the one JSONL log, the one progress display."""

from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pytest
from rich.console import Console

from megasense.files import progress
from megasense.files.atomic import AtomicPath, atomic_file, atomic_write_text, publish_directory
from megasense.files.jsonl import JsonlLog, JsonlLogError


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _normal_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_atomic_writes_replace_the_target_with_a_normal_files_mode_and_leave_nothing_behind(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert _mode(target) == _normal_file_mode()  # not mkstemp's private 0600
    with AtomicPath(tmp_path / "model.onnx", suffix=".onnx") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".onnx")
        tmp.write_bytes(b"graph")  # a writer that opens the path itself
    assert (tmp_path / "model.onnx").read_bytes() == b"graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "sub"]
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_an_error_keeps_the_old_file_and_deletes_the_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), AtomicPath(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_publish_directory_swaps_a_whole_tree_into_place(tmp_path):
    target = tmp_path / "step-1"
    target.mkdir()
    (target / "stale").write_text("x", encoding="utf-8")
    tmp = tmp_path / ".step-1.tmp"
    tmp.mkdir()
    (tmp / "state.json").write_text("{}", encoding="utf-8")
    publish_directory(tmp, target)
    assert [p.name for p in target.iterdir()] == ["state.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-1"]


def test_jsonl_log_appends_flushed_records_with_numbers_numpy_gives_it(tmp_path):
    path = tmp_path / "runs" / "metrics.jsonl"
    with JsonlLog(path) as log:
        log.write({"step": np.int64(3), "loss": np.float32(0.5), "where": tmp_path})
        assert json.loads(path.read_text(encoding="utf-8"))["step"] == 3  # flushed before close
    with JsonlLog(path) as log:
        log.write({"event": "end"})
    first, second = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    assert first["loss"] == 0.5 and first["where"] == str(tmp_path) and "time" in first
    assert second["event"] == "end"
    with JsonlLog(None) as log:
        log.write({"dropped": True})


def test_jsonl_log_names_the_path_it_cannot_open(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(JsonlLogError, match=r"a-file/metrics\.jsonl: cannot open the log"):
        JsonlLog(blocker / "metrics.jsonl").__enter__()


def test_one_display_shows_several_bars_and_a_status_line(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "Console", lambda stderr: Console(file=out, width=120))
    with (
        progress.ProgressBars(status="loss {loss:.2f}") as bars,
        bars("reading", None, loss=float("nan")) as read,
        bars("training", 10, completed=2, loss=1.0) as train,
    ):
        read(7)
        train(completed=5, loss=0.25)
    text = out.getvalue()
    assert "7/7" in text  # a bar of unknown length shows its count when done
    assert "5/10" in text and "loss 0.25" in text
    with progress.progress_bar("off", 3, enabled=False) as advance:
        advance(1, loss=2.0)
        advance.estimate_total(4)

"""lib/core/space.py: a write that fails for lack of space is one DiskFullError line, and leaves nothing half-written.

A full disk is simulated by patching the writer (ENOSPC, or torch.save's RuntimeError with no space left).
"""
import errno
import os

import pytest
import torch

from lib.__main__ import main
from lib.core import space
from lib.core.errors import DiskFullError
from lib.training import run_files


def enospc(path):
    """A writer that writes half a file, then fails as a full disk does."""
    with open(path, "wb") as half:
        half.write(b"x" * 1000)
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_enospc_names_what_where_and_the_space_left_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("finished\n")
    with pytest.raises(DiskFullError) as caught:
        space.atomic_write(target, enospc, "the history")
    message = str(caught.value)
    assert f"writing the history {target}" in message and "free there without it" in message
    assert "finished work is kept" in message and "\n" not in message
    assert target.read_text() == "finished\n" and os.listdir(tmp_path) == ["history.csv"]


def test_torch_saves_runtime_error_is_a_full_disk_only_when_space_is_short(tmp_path, monkeypatch):
    def torch_full(path):
        path.write_bytes(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 407168 vs 407056")
    monkeypatch.setattr(space, "free_bytes", lambda folder: 1000)
    with pytest.raises(DiskFullError, match=r"writing the checkpoint .*checkpoint.pth \(1002 B free there"):
        space.atomic_write(tmp_path / "checkpoint.pth", torch_full, "the checkpoint")
    monkeypatch.setattr(space, "free_bytes", lambda folder: 10 * space.LOW_SPACE)
    with pytest.raises(RuntimeError, match="unexpected pos") as caught:
        space.atomic_write(tmp_path / "checkpoint.pth", torch_full, "the checkpoint")
    assert not isinstance(caught.value, DiskFullError) and os.listdir(tmp_path) == []


def test_train_on_a_full_disk_ends_with_one_line_and_exit_1_then_continues(tmp_path, monkeypatch, capsys):
    """The checkpoint of epoch 2 finds the disk full: exit 1, one line; epoch 1 is kept and a rerun finishes."""
    saves, real_save = [], torch.save

    def save(state, path):
        saves.append(path)
        if len(saves) == 3:  # epoch 1's checkpoint and best weights, then epoch 2's checkpoint
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 407168 vs 407056")
        real_save(state, path)
    monkeypatch.setattr(run_files.torch, "save", save)
    monkeypatch.setattr(space, "free_bytes", lambda folder: 4096)
    argv = ["train", "simplenet", "--profile", "smoke", "--results-dir", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no space left on the disk mounted at ") and "writing the checkpoint" in err
    run = tmp_path / "runs" / "simplenet" / "smoke"
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == [
        "checkpoint.pth", "config.json", "history.csv", "model_best.pth", "steps.csv"]
    assert torch.load(run / "checkpoint.pth", weights_only=True)["epoch"] == 1
    monkeypatch.undo()
    assert main(argv) == 0 and (run / "metrics.json").exists()


def test_a_full_disk_while_decoding_removes_the_partial_cache(tiny, monkeypatch):
    from lib import data

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with pytest.raises(DiskFullError, match="writing the decoded cache"):
        data.load_split(tiny, "val", size=32)
    assert not [p for p in (tiny / ".cache").iterdir() if p.name != ".lock"]

"""lib/core/progress.py: the terminal monitor of runs, epochs and decoding."""
import io
import os

from lib import data
from lib.core import progress


def test_monitor_prints_runs_and_epochs_with_eta(tmp_path):
    run_dir, lines = tmp_path / "run", io.StringIO()
    run_dir.mkdir()
    with progress.Monitor(tmp_path / "progress.jsonl", out=lines, interval=60) as monitor:
        announce = lambda event: progress.announce(event, "simplenet", run_dir, {"epochs": 4})
        announce("train")
        announce("fit")
        monitor.poll()
        (run_dir / "history.csv").write_text("epoch,val_acc1\n1,3.5\n2,4.25\n")
        monitor.poll()
        announce("finished")
        announce("cached")  # the run just trained, re-used in the same section: not announced again
        progress.announce("cached", "vit", tmp_path / "vit", {"epochs": 6})
        progress.announce("cached", "vit", tmp_path / "vit", {"epochs": 6})
        monitor.section("next notebook")
        progress.announce("cached", "vit", tmp_path / "vit", {"epochs": 6})
    printed = lines.getvalue()
    assert f"simplenet: training 4 epochs in {run_dir}" in printed
    assert "simplenet: epoch 2/4  val top-1 4.25%" in printed and "ETA" in printed
    assert "simplenet: finished in" in printed and f"vit: re-using the finished run in {tmp_path / 'vit'}" in printed
    assert [e["event"] for e in monitor.events] == ["train", "fit", "finished", "cached", "cached"]
    assert printed.count("vit: re-using the finished run") == 2 and "simplenet: re-using" not in printed
    assert progress.PROGRESS_ENV not in os.environ
    table = progress.time_table({"00_data.ipynb": (8.2, 0, 0), "01_convolution.ipynb": (383.0, 4, 0)})
    assert table.splitlines()[2].split() == ["01_convolution.ipynb", "6", "min", "23", "s", "4", "0"]
    assert table.splitlines()[-1].split() == ["total", "6", "min", "31", "s"]
    times = {"00_data.ipynb": (8.2, 0, 0), "01_convolution.ipynb": (383.0, 4, 0), "02_vit.ipynb": (120.0, 2, 0)}
    lines = progress.time_table(times, {"01": 300.0, "02": 100.0}).splitlines()
    assert lines[0].split() == ["notebook", "time", "estimated", "runs", "trained", "re-used"]
    assert lines[1].split() == ["00_data.ipynb", "8", "s", "-", "0", "0"]
    assert lines[2].split() == ["01_convolution.ipynb", "6", "min", "23", "s", "5", "min", "00", "s", "4", "0"]
    assert lines[-2].split() == ["total", "8", "min", "31", "s", "6", "min", "40", "s"]
    assert lines[-1] == f"time / estimate: {511.2 / 400:.2f}"


def test_monitor_polling_after_a_short_run_does_not_call_it_resumed(tmp_path):
    """A run that trains and finishes between two polls is shown as fresh, with its epoch, not as resumed."""
    run_dir, lines = tmp_path / "run", io.StringIO()
    run_dir.mkdir()
    with progress.Monitor(tmp_path / "progress.jsonl", out=lines, interval=60) as monitor:
        progress.announce("train", "simplenet", run_dir, {"epochs": 1})
        (run_dir / "history.csv").write_text("epoch,val_acc1\n1,3.5\n")
        progress.announce("finished", "simplenet", run_dir, {"epochs": 1})
        monitor.poll()
    printed = lines.getvalue()
    assert "resuming" not in printed and "simplenet: epoch 1/1  val top-1 3.50%" in printed


def test_monitor_prints_when_a_data_set_is_decoded(tmp_path, monkeypatch):
    """Decoding a split once (minutes on the full data set) shows in the terminal, not as a training run."""
    monkeypatch.setattr(data.decoded, "cache_dir", lambda root: tmp_path)
    lines = io.StringIO()
    with progress.Monitor(tmp_path / "progress.jsonl", out=lines, interval=60) as monitor:
        data.load_split(data.SAMPLE_ROOT, "val", 32, limit=5)
        monitor.poll()
    printed = lines.getvalue()
    assert f"decode val at {data.base_size(32)}px (once): 5 images into {tmp_path}" in printed
    assert "decoded 5 images in" in printed and monitor.events == []

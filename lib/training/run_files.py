"""Files of a run: atomic writes (temporary file, then rename; lib.core.space) of JSON, CSV and checkpoints; reading a
checkpoint back (weights_only); TensorBoard scalars; the provenance a result carries, with the git commit it was
produced from.
"""
import csv
import importlib.util
import json
import platform
import subprocess
import time

import torch

from lib.core import devices
from lib.core.errors import CheckpointError, first_line
from lib.core.space import atomic_write
from lib.data.layout import PROJECT_ROOT


def write_json(path, data, what="the run file"):
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"), what)


def write_csv(path, rows, fields, what="the run file"):
    def write(p):
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write, what)


def save_checkpoint(path, state, what="the checkpoint"):
    atomic_write(path, lambda p: torch.save(state, p), what)


def load_checkpoint(path):
    """Read a checkpoint written by `fit` into CPU memory (weights_only: tensors and plain data only).

    CheckpointError when the file is there but cannot be read as one (truncated, empty, not a checkpoint).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch.load raises RuntimeError, EOFError, KeyError, UnpicklingError, ... here
        raise CheckpointError(f"{path} is truncated or not a checkpoint ({type(error).__name__}: "
                              f"{first_line(error)})") from error


def provenance(cfg, device, processes, amp, amp_bf16_speedup, train_time_s, images_per_s):
    """Where and how a run's result was produced, as metrics.json records it.

    cfg: the resolved configuration; device: the torch.device trained on; processes: how many trained together;
    amp: the resolved choice ('bf16' | 'off') and the bf16 speedup measured to make it (None if not measured);
    train_time_s: seconds spent in training epochs (validation excluded); images_per_s: training throughput.
    Adds the seed, the device's name, torch and Python versions, the git commit, this process's peak memory
    (MiB) and the time of finishing.
    """
    return {"config": cfg, "seed": cfg["seed"], "device": devices.device_name(device), "processes": processes,
            "amp": amp, "amp_bf16_speedup": amp_bf16_speedup, "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": git_commit(), "train_time_s": train_time_s,
            "images_per_s": images_per_s, "peak_memory_mb": devices.peak_memory_mb(device),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def git_commit():
    """HEAD of the project's repository (with '-dirty' for uncommitted changes), or 'unknown'."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def tensorboard_writer(run_dir):
    """A TensorBoard writer into run_dir/tb, or None without the `tensorboard` package."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(run_dir / "tb")


def log_epoch(writer, row, steps, epoch):
    """An epoch's history row and its logged optimizer steps (`steps`: the step log's entries, those of `epoch`
    taken) as TensorBoard scalars, when there is a writer."""
    if writer is None:
        return
    for key, value in row.items():
        if key != "epoch":
            writer.add_scalar(f"epoch/{key}", value, epoch)
    for entry in (entry for entry in steps if entry["epoch"] == epoch):
        writer.add_scalar("step/loss", entry["loss"], entry["step"])
        writer.add_scalar("step/lr", entry["lr"], entry["step"])
    writer.flush()

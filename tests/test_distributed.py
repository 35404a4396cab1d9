"""Multi-process training: device and backend choice, and 2-process DDP on gloo under torchrun (CPU)."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from lib import experiments
from lib.core import devices
from lib.core.devices import DeviceError
from lib.data.layout import PROJECT_ROOT


WORKER = PROJECT_ROOT / "tests" / "ddp_worker.py"


def torchrun(*args, timeout=240):
    """Run `torchrun --standalone --nproc-per-node 2 ARGS` from the project root; returns the CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *map(str, args)]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- device before the group (fake CUDA)

@pytest.fixture
def fake_two_gpus(monkeypatch):
    """Two visible 'GPUs', torchrun's environment for local rank 1, and a record of the calls made."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(devices.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(devices.dist, "init_process_group",
                        lambda backend, device_id=None: calls.append(("init_process_group", backend, device_id)))
    return calls


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_the_local_gpu_is_set_and_bound_before_joining(fake_two_gpus, device):
    assert devices.init_distributed(device) == torch.device("cuda", 1)
    gpu = torch.device("cuda", 1)
    assert fake_two_gpus == [("set_device", gpu), ("init_process_group", "nccl", gpu)]


def test_the_device_decides_the_backend(fake_two_gpus):
    assert devices.init_distributed("cpu") == torch.device("cpu")
    assert fake_two_gpus == [("init_process_group", "gloo", None)]


def test_an_explicit_gpu_under_torchrun_is_an_error(fake_two_gpus):
    with pytest.raises(DeviceError, match="every process on one GPU.*CUDA_VISIBLE_DEVICES"):
        devices.init_distributed("cuda:0")
    assert fake_two_gpus == []


# ----------------------------------------------------------------------------- 2 processes on gloo

@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Two launches (each costs seconds of start-up): a whole 3-epoch 2-process run, then the same run until
    rank 0 is killed in epoch 2; then a new launch that resumes it and goes on to a run whose loss turns NaN on
    rank 1. Returns (output folder, the second launch's CompletedProcess, its wall time in seconds, the first
    launch's CompletedProcess)."""
    out = tmp_path_factory.mktemp("ddp")
    killed = torchrun(WORKER, out, "whole", "killed")
    start = time.monotonic()
    done = torchrun(WORKER, out, "resume", "nan", timeout=180)
    return out, done, time.monotonic() - start, killed


def test_ranks_draw_different_augmentations(ddp_runs):
    first, second = (torch.load(ddp_runs[0] / f"draw{rank}.pt") for rank in (0, 1))
    assert first.shape == second.shape and not torch.equal(first, second)


def test_each_rank_saves_its_own_random_state(ddp_runs):
    rng = torch.load(ddp_runs[0] / "whole" / "checkpoint.pth", weights_only=True)["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["cpu"], rng[1]["cpu"])


def test_a_run_killed_in_epoch_2_resumes_from_epoch_1_to_the_uninterrupted_result(ddp_runs):
    out, killed = ddp_runs[0], ddp_runs[3]
    assert killed.returncode != 0 and (out / "whole" / "metrics.json").exists(), killed.stderr[-3000:]
    assert "Signals.SIGKILL" in killed.stderr or "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    whole, split = (json.loads((ddp_runs[0] / name / "metrics.json").read_text()) for name in ("whole", "split"))
    assert whole["provenance"]["processes"] == split["provenance"]["processes"] == 2
    for key in ("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "best_val_acc1"):
        assert split[key] == pytest.approx(whole[key], abs=1e-6), key


def test_a_single_process_resumes_a_two_process_checkpoint_with_a_warning(ddp_runs, tmp_path):
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import trainer
    finally:
        sys.path.remove(str(WORKER.parent))
    run = trainer(tmp_path)
    with pytest.warns(UserWarning, match="random state of 2 process"):
        run.resume(ddp_runs[0] / "whole" / "checkpoint.pth")
    run.cfg = {**run.cfg, "epochs": 4}  # one more epoch than the 2-process run trained
    assert run.fit()["epochs"] == 4


def test_a_nan_loss_on_one_rank_stops_both_promptly(ddp_runs):
    out, done, seconds, _ = ddp_runs
    output = done.stdout + done.stderr
    assert done.returncode != 0 and seconds < 180  # gloo alone would wait 30 minutes for the lost rank
    for rank in (0, 1):
        assert f"rank {rank}: error: the training loss became nan or inf on rank(s) 1 in epoch 1" in output, \
            output[-3000:]
    assert not (out / "nan" / "checkpoint.pth").exists()


def test_batchnorm_under_two_processes_is_syncbatchnorm_over_the_global_batch(tmp_path):
    """2 processes with SyncBatchNorm (PyTorch's, on test-only CPU kernels) train exactly as 1 process on the same
    global batches: the BatchNorm statistics and the weights do not depend on the number of processes."""
    done = torchrun(WORKER, tmp_path, "syncbn")
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(tmp_path / "syncbn.pt", weights_only=True)
    assert "SyncBatchNorm" in two["layers"] and "BatchNorm2d" not in two["layers"]
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import batchnorm_trainer
    finally:
        sys.path.remove(str(WORKER.parent))
    one = batchnorm_trainer(tmp_path / "one")
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in one.model.modules())  # one process: plain
    one.fit()
    for key, value in one.model.state_dict().items():
        assert torch.allclose(two["state"][key].float(), value.float(), atol=1e-5), key


def test_an_error_on_one_rank_ends_the_other_within_seconds(tmp_path):
    """Rank 1 fails alone while rank 0 waits for it in the gradient all-reduce: rank 1 ends at once
    (devices.exit_process), and torchrun stops rank 0, instead of gloo's 30-minute wait."""
    done = torchrun(WORKER, tmp_path, "fail", timeout=300)
    ended = time.time()
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "rank 1: failed: an error on rank 1 only" in output, output[-3000:]
    assert ended - float((tmp_path / "failed_at").read_text()) < 30
    assert not (tmp_path / "fail" / "checkpoint.pth").exists()


def test_a_torchrun_run_is_written_once_and_reused_by_a_single_process(tmp_path):
    """`torchrun -m lib train` on gloo: both ranks train, only rank 0 reports and writes the run, which a
    later single-process call finds finished and re-uses."""
    done = torchrun("-m", "lib", "train", "simplenet", "--profile", "smoke", "--device", "cpu",
                    "--results-dir", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("val Acc@1") == 1
    path = tmp_path / "runs" / "simplenet" / "smoke"
    stamp = (path / "metrics.json").stat().st_mtime_ns
    again = experiments.run("simplenet", "smoke", results_dir=tmp_path, device="cpu", progress=False)
    assert again.dir == path and again.metrics["provenance"]["processes"] == 2
    assert (path / "metrics.json").stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == ["smoke"]  # nothing set aside, nothing retrained

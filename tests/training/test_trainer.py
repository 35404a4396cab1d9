"""lib/training/trainer.py: schedule, run files, checkpoints and resume, errors, DDP on gloo (CPU)."""
import json
import os
import sys
import time

import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lib.attacks.adversarial_training import AdversarialTraining
from lib.attacks.pgd import PGDAttack
from lib.core.errors import TrainingError
from lib.training.trainer import warmup_cosine
from tests.training.launch import WORKER, torchrun
from tests.training.toy_training import CFG, trainer


def test_warmup_cosine_shape():
    total, warmup = 100, 10
    factors = [warmup_cosine(s, total, warmup) for s in range(total + 1)]
    assert factors[0] == 0 and factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5) and factors[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_fit_writes_run_files_and_learns(tmp_path):
    metrics = trainer(tmp_path).fit()
    history = pd.read_csv(tmp_path / "history.csv")
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert steps["lr"].max() <= CFG["lr"] + 1e-12 and steps["step"].diff().dropna().eq(2).all()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val_acc1"] == pytest.approx(metrics["val_acc1"]) and saved["epochs"] == 3
    for key in ("seed", "device", "torch", "git_commit", "train_time_s", "images_per_s", "peak_memory_mb"):
        assert key in saved["provenance"]
    assert (tmp_path / "checkpoint.pth").exists() and (tmp_path / "model_best.pth").exists()
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tb"))


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    whole = trainer(tmp_path / "whole").fit()
    first = trainer(tmp_path / "split")
    assert first.fit(stop_after=1) is None
    assert not (tmp_path / "split" / "metrics.json").exists()
    second = trainer(tmp_path / "split")
    second.resume(tmp_path / "split" / "checkpoint.pth")
    resumed = second.fit()
    for key in ("train_loss", "val_loss", "val_acc1", "val_acc5"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-6), key
    timing = ["epoch_time_s", "images_per_s"]
    split = pd.read_csv(tmp_path / "split" / "history.csv").drop(columns=timing)
    pd.testing.assert_frame_equal(split, pd.read_csv(tmp_path / "whole" / "history.csv").drop(columns=timing))


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path):
    run = trainer(tmp_path, epochs=3)
    run.fit(stop_after=1)
    saved = (tmp_path / "checkpoint.pth").read_bytes()
    run.optimizer.param_groups[0]["lr"] = float("inf")
    for group in run.optimizer.param_groups:
        group["initial_lr"] = float("inf")
    run.scheduler.base_lrs = [float("inf")]
    with pytest.raises(TrainingError, match="became nan|became inf"):
        run.fit()
    assert (tmp_path / "checkpoint.pth").read_bytes() == saved
    assert not (tmp_path / "metrics.json").exists()


def test_too_few_images_for_a_batch_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="no full batch"):
        trainer(tmp_path, batch_size=1000)


def test_training_caps_limit_steps_and_validation_batches(tmp_path):
    run = trainer(tmp_path, epochs=2, train_batches=2, val_batches=1)
    calls = []
    run.val_transform.register_forward_hook(lambda module, inputs, out: calls.append(len(out)))
    metrics = run.fit()
    assert run.scheduler.last_epoch == 4 and run.steps_per_epoch == 2
    assert calls == [CFG["val_batch_size"]] * 2  # one val batch per epoch
    assert metrics["epochs"] == 2


class CountSyncs(TorchDispatchMode):
    """Counts ops that read a device value on the host (.item(), bool(), .tolist()) or build a tensor from host data."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.lift_fresh.default):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("with_hook", [False, True])
def test_a_training_step_waits_for_nothing(tmp_path, with_hook):
    def syncs(steps):
        run = trainer(tmp_path / str(steps), log_every=1000, train_batches=steps)
        if with_hook:  # an input hook that reports a 0-d count, as adversarial training does
            run.input_hook = lambda model, images, labels, progress: (images, {"clean_correct": (labels >= 0).sum()})
        with CountSyncs() as counter:
            run.train_epoch()
        return counter.count
    assert syncs(6) == syncs(2)  # the epoch's fixed reads (end-of-epoch check, meter) only, none per step


@pytest.mark.parametrize("data_on_device, ramp_epochs", [("off", 0), ("on", 0), ("off", 1)])
def test_an_adversarial_training_step_waits_for_nothing(tmp_path, data_on_device, ramp_epochs):
    def syncs(steps):
        run = trainer(tmp_path / str(steps), log_every=1000, train_batches=steps, data_on_device=data_on_device)
        run.input_hook = AdversarialTraining(PGDAttack(num_steps=2, step_size=0.01, epsilon=0.03, targeted=None),
                                             ramp_epochs=ramp_epochs)
        with CountSyncs() as counter:
            run.train_epoch()
        return counter.count
    assert syncs(6) == syncs(2)


def test_an_input_hook_gets_the_epochs_done_before_each_batch(tmp_path):
    run, seen = trainer(tmp_path, epochs=2, train_batches=3, log_every=1000), []
    run.input_hook = lambda model, images, labels, progress: seen.append(progress) or (images, {})
    run.fit()
    assert seen == pytest.approx([0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3])


@pytest.mark.parametrize("choice, path", [("auto", "loader"), ("on", "device"), ("off", "loader")])
def test_the_training_data_path_is_recorded(tmp_path, choice, path):
    assert trainer(tmp_path, data_on_device=choice, epochs=1).fit()["provenance"]["train_data"] == path


def test_nan_is_caught_at_the_next_log_point(tmp_path):
    run = trainer(tmp_path, log_every=3)
    run.input_hook = lambda model, images, labels, progress: (images * float("nan"), {}) if run.scheduler.last_epoch == 1 \
        else (images, {})
    with pytest.raises(TrainingError, match="became nan or inf in epoch 1 \\(by step 3\\)"):
        run.train_epoch()


def test_bf16_autocast_on_cpu_learns_like_fp32_and_keeps_fp32_weights(tmp_path):
    run = trainer(tmp_path / "bf16", amp="bf16")
    assert run.fit()["provenance"]["amp"] == "bf16"
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    trainer(tmp_path / "fp32", amp="off").fit()
    bf16, fp32 = (pd.read_csv(tmp_path / name / "history.csv") for name in ("bf16", "fp32"))
    assert bf16["train_loss"].iloc[-1] < bf16["train_loss"].iloc[0]
    for key in ("train_loss", "val_loss"):
        assert bf16[key].to_numpy() == pytest.approx(fp32[key].to_numpy(), rel=1e-2), key


@pytest.mark.parametrize("amp,dtype", [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_training_and_validation_run_in_the_named_precision_whatever_the_global_tf32_setting(tmp_path, amp, dtype):
    """amp 'off' means IEEE fp32 (TF32 off) and 'bf16' autocast, in the step and in validation alike."""
    run = trainer(tmp_path, amp=amp, epochs=1, train_batches=1, val_batches=1)
    seen = []
    run.model[0].register_forward_hook(lambda module, inputs, out: seen.append(
        (module.training, out.dtype, torch.backends.cuda.matmul.fp32_precision)))
    before = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        run.fit()
    finally:
        torch.backends.cuda.matmul.fp32_precision = before
    assert seen == [(True, dtype, "ieee"), (False, dtype, "ieee")]


# ----------------------------------------------------------------------------- 2 processes on gloo

@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Two launches (each costs seconds of start-up): a whole 3-epoch 2-process run, then the same run until
    rank 0 is killed in epoch 2; then a new launch that resumes it, decides data_on_device='auto' on fake GPUs
    (ddp_worker.decide_auto) and goes on to a run whose loss turns NaN on rank 1. Returns (output folder, the
    second launch's CompletedProcess, its wall time in seconds, the first launch's CompletedProcess)."""
    out = tmp_path_factory.mktemp("ddp")
    killed = torchrun(WORKER, out, "whole", "killed")
    start = time.monotonic()
    done = torchrun(WORKER, out, "resume", "auto", "nan", timeout=180)
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


def test_the_ranks_agree_on_data_on_device_auto(ddp_runs):
    """Rank 1's shard does not fit its GPU's free memory: neither rank holds the split on the device."""
    verdicts = [json.loads((ddp_runs[0] / f"auto{rank}.json").read_text()) for rank in (0, 1)]
    assert verdicts == [{"fits": True, "agreed": False}, {"fits": False, "agreed": False}]


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


def test_an_error_on_one_rank_ends_the_other_within_seconds(tmp_path):
    """Rank 1 fails alone while rank 0 waits for it in the gradient all-reduce: rank 1 ends at once
    (devices.exit_process), and torchrun stops rank 0, instead of gloo's 30-minute wait."""
    done = torchrun(WORKER, tmp_path, "fail", timeout=300)
    ended = time.time()
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "rank 1: failed: an error on rank 1 only" in output, output[-3000:]
    assert ended - float((tmp_path / "failed_at").read_text()) < 30
    assert not (tmp_path / "fail" / "checkpoint.pth").exists()

"""The one trainer: schedule, meters, checkpoints and resume, caching, errors, DDP on gloo."""
import json
import os

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import TensorDataset

from lib.attacks.adversarial_training import AdversarialTraining
from lib.attacks.pgd import PGDAttack
from lib.core import devices
from lib.core.errors import TrainingError
from lib.training import step_costs as stepcost
from lib.training.metrics import Meter, correct_topk
from lib.training.trainer import Trainer, warmup_cosine


CFG = dict(epochs=3, batch_size=16, val_batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
           warmup_epochs=1, grad_clip=1.0, label_smoothing=0.0, seed=0, amp="off", channels_last=False,
           log_every=2, num_workers=0)


class ToFloat(nn.Module):
    """uint8 batch -> float in [0, 1] (stands in for the data transforms)."""

    def forward(self, x):
        return x.float() / 255


class Jitter(nn.Module):
    """A random transform, so that resume must restore the RNG state to match."""

    def forward(self, x):
        return (x.float() / 255 + 0.05 * torch.randn_like(x.float())).clamp(0, 1)


def toy_data(n=96, classes=6, seed=0):
    """uint8 images whose mean colour encodes the class: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = (labels[:, None, None, None] * 40 + torch.randint(0, 30, (n, 3, 8, 8), generator=g)).to(torch.uint8)
    return TensorDataset(images, labels)


def toy_model(classes=6):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, classes))


def trainer(run_dir, **cfg):
    return Trainer(toy_model(), toy_data(), toy_data(48, seed=1), Jitter(), ToFloat(), {**CFG, **cfg}, run_dir,
                   device="cpu", progress=False)


def test_warmup_cosine_shape():
    total, warmup = 100, 10
    factors = [warmup_cosine(s, total, warmup) for s in range(total + 1)]
    assert factors[0] == 0 and factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5) and factors[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_correct_topk_and_meter():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    labels = torch.tensor([0, 0])
    c1, c5 = correct_topk(logits, labels)
    assert (c1.item(), c5.item()) == (1, 1)
    meter = Meter("cpu")
    meter.update(torch.tensor(2.0), logits, labels)
    meter.add({"clean_correct": torch.tensor(2)})
    result = meter.result("train")
    assert result == {"train_loss": 2.0, "train_acc1": 50.0, "train_acc5": 50.0, "train_images": 2,
                      "train_clean_acc1": 100.0}


def test_topk_counts_ties_against_the_label_on_fp32():
    logits = torch.tensor([[1.0, 1.0, 0.0], [2.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]], dtype=torch.bfloat16)
    labels = torch.tensor([0, 0, 0])
    c1, c2 = correct_topk(logits, labels, ks=(1, 2))
    assert (c1.item(), c2.item()) == (1, 2)  # row 0 ties (top-2 only), row 1 wins, a NaN logit never hits


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
            run.input_hook = lambda model, images, labels: (images, {"clean_correct": (labels >= 0).sum()})
        with CountSyncs() as counter:
            run.train_epoch()
        return counter.count
    assert syncs(6) == syncs(2)  # the epoch's fixed reads (end-of-epoch check, meter) only, none per step


@pytest.mark.parametrize("data_on_device", ["off", "on"])
def test_an_adversarial_training_step_waits_for_nothing(tmp_path, data_on_device):
    def syncs(steps):
        run = trainer(tmp_path / str(steps), log_every=1000, train_batches=steps, data_on_device=data_on_device)
        run.input_hook = AdversarialTraining(PGDAttack(num_steps=2, step_size=0.01, epsilon=0.03, targeted=None))
        with CountSyncs() as counter:
            run.train_epoch()
        return counter.count
    assert syncs(6) == syncs(2)


@pytest.mark.parametrize("choice, path", [("auto", "loader"), ("on", "device"), ("off", "loader")])
def test_the_training_data_path_is_recorded(tmp_path, choice, path):
    assert trainer(tmp_path, data_on_device=choice, epochs=1).fit()["provenance"]["train_data"] == path


def test_nan_is_caught_at_the_next_log_point(tmp_path):
    run = trainer(tmp_path, log_every=3)
    run.input_hook = lambda model, images, labels: (images * float("nan"), {}) if run.scheduler.last_epoch == 1 \
        else (images, {})
    with pytest.raises(TrainingError, match="became nan or inf in epoch 1 \\(by step 3\\)"):
        run.train_epoch()


def test_amp_auto_without_cpu_bf16_is_off_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(stepcost, "bf16_speedup", lambda *a: pytest.fail("no measurement without bf16 instructions"))
    trainer(tmp_path, amp="auto", epochs=1).fit()
    provenance = json.loads((tmp_path / "metrics.json").read_text())["provenance"]
    assert provenance["amp"] == "off" and provenance["amp_bf16_speedup"] is None


@pytest.mark.parametrize("speedup, choice", [(1.8, "bf16"), (0.73, "off")])
def test_amp_auto_on_a_bf16_cpu_follows_the_measured_speedup(tmp_path, monkeypatch, speedup, choice):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(stepcost, "bf16_speedup", lambda model, images, labels: speedup)
    run = trainer(tmp_path, amp="auto", epochs=2)
    run.fit(stop_after=1)
    provenance = trainer(tmp_path, amp="auto", epochs=2)
    monkeypatch.setattr(stepcost, "bf16_speedup", lambda *a: pytest.fail("a resumed run keeps its choice"))
    provenance.resume(tmp_path / "checkpoint.pth")
    metrics = provenance.fit()["provenance"]
    assert (metrics["amp"], metrics["amp_bf16_speedup"]) == (choice, speedup)


def test_bf16_speedup_leaves_model_and_random_state_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(144, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with torch.random.fork_rng(devices=[]):
        speedup = stepcost.bf16_speedup(model, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]), repeats=1)
    assert speedup > 0 and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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

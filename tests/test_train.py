"""The one trainer: schedule, meters, checkpoints and resume, caching, errors, DDP on gloo."""
import json
import os

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lib.train import Meter, Trainer, TrainingError, correct_topk, warmup_cosine

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
    assert result == {"train_loss": 2.0, "train_acc1": 50.0, "train_acc5": 50.0, "train_clean_acc1": 100.0}


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

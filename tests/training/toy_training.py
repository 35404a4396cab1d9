"""A toy data set and model, and a Trainer on them (CPU, seconds)."""
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lib.training.trainer import Trainer


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

"""Toy DDP training on gloo, started under torchrun by tests/training/test_trainer.py
and tests/training/test_placement.py.

    torchrun --nproc-per-node 2 tests/training/ddp_worker.py OUT STAGE [STAGE ...]

Stages, run in order in the same processes: `whole` trains 3 epochs into OUT/whole and saves each rank's
first augmentation draw as OUT/draw<rank>.pt; `killed` trains the same run into OUT/split until rank 0 is
killed (SIGKILL, no clean-up) at its first step of epoch 2, which ends the launch; `resume` continues OUT/split
to the end; `nan` makes rank 1's loss NaN at its second step; `fail` raises an error on rank 1 alone at its
second step; `auto` decides data_on_device='auto' on a fake GPU whose free memory holds the training split on
rank 0 only, and writes each rank's own verdict and the agreed one as OUT/auto<rank>.json; `syncbn` trains a
BatchNorm model 2 epochs on CPU kernels standing in for SyncBatchNorm's CUDA ones (tests/training/cpu_syncbn.py)
and saves rank 0's weights as OUT/syncbn.pt. A TrainingError is printed as
"rank R: error: ..." and ends the process with status 3, another error as "rank R: failed: ..." with status 1
(lib.core.devices.exit_process, as `python -m lib` does).
"""
import json
import os
from pathlib import Path
import signal
import sys
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

import cpu_syncbn
from lib.core.devices import exit_process, init_distributed, world
from lib.core.errors import TrainingError
from lib.training import loaders
from lib.training.trainer import Trainer


CFG = dict(epochs=3, batch_size=16, val_batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
           warmup_epochs=1, grad_clip=1.0, label_smoothing=0.0, seed=0, amp="off", channels_last=False,
           log_every=2, num_workers=0)


class Jitter(nn.Module):
    """uint8 -> [0, 1] plus Gaussian noise; keeps its first draw."""

    def __init__(self):
        super().__init__()
        self.first = None

    def forward(self, x):
        noise = 0.05 * torch.randn(x.shape)
        if self.first is None:
            self.first = noise.clone()
        return (x.float() / 255 + noise).clamp(0, 1)


def toy_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 6
    images = (labels[:, None, None, None] * 40 + torch.randint(0, 30, (n, 3, 8, 8), generator=g)).to(torch.uint8)
    return TensorDataset(images, labels)


def trainer(run_dir, input_hook=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 6))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return Trainer(model, toy_data(96, 0), toy_data(48, 1), Jitter(), Jitter(), CFG, run_dir, device="cpu",
                   input_hook=input_hook, progress=False)


class Scale(nn.Module):
    """uint8 -> [0, 1], nothing random."""

    def forward(self, x):
        return x.float() / 255


def batchnorm_trainer(run_dir):
    """A BatchNorm model without randomness in its data, for comparing 2 processes with 1 (2 epochs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 6))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return Trainer(model, toy_data(96, 0), toy_data(48, 1), Scale(), Scale(), {**CFG, "epochs": 2}, run_dir,
                   device="cpu", progress=False)


def nan_on_rank_1(model, images, labels, progress, calls=[]):
    calls.append(1)
    poisoned = world()[0] == 1 and len(calls) == 2
    return (images * float("nan") if poisoned else images), {}


def fail_on_rank_1(out):
    """An input hook that raises on rank 1 at its second step (after writing the time to OUT/failed_at), while
    rank 0 goes on into the step's gradient all-reduce and waits there for rank 1."""
    calls = []

    def hook(model, images, labels, progress):
        calls.append(1)
        if world()[0] == 1 and len(calls) == 2:
            (out / "failed_at").write_text(repr(time.time()))
            raise RuntimeError("an error on rank 1 only")
        return images, {}
    return hook


def kill_rank_0_in_epoch_2(run):
    """An input hook for `run` that leaves the batches alone until rank 0 starts epoch 2, and kills it there."""
    def hook(model, images, labels, progress):
        if run.epoch == 1 and world()[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return images, {}
    return hook


def decide_auto(out, rank):
    """use_device('auto') for a 96-image split (each rank's shard: 48 x 200 bytes) on a fake 'cuda:0' whose free
    memory holds that shard on rank 0 and not on rank 1; OUT/auto<rank>.json: {'fits': this rank's own verdict,
    'agreed': the decision}."""
    split = toy_data(96, 0)
    free = (4 if rank == 0 else 1) * loaders.shard_bytes(split, 2)
    torch.cuda.mem_get_info = lambda device: (free, 80 * 2**30)
    fits = loaders.shard_bytes(split, 2) <= loaders.RESIDENT_SHARE * free
    agreed = loaders.use_device("auto", split, torch.device("cuda", 0), world_size=2)
    (out / f"auto{rank}.json").write_text(json.dumps({"fits": fits, "agreed": agreed}))


def main(out, stages):
    init_distributed("cpu")
    rank = world()[0]
    for stage in stages:
        if stage == "whole":
            run = trainer(out / "whole")
            run.fit()
            torch.save(run.train_transform.first, out / f"draw{rank}.pt")
        elif stage == "killed":
            run = trainer(out / "split")
            run.input_hook = kill_rank_0_in_epoch_2(run)
            run.fit()
        elif stage == "resume":
            run = trainer(out / "split")
            run.resume(out / "split" / "checkpoint.pth")
            run.fit()
        elif stage == "auto":
            decide_auto(out, rank)
        elif stage == "nan":
            trainer(out / "nan", input_hook=nan_on_rank_1).fit()
        elif stage == "syncbn":
            cpu_syncbn.enable()
            run = batchnorm_trainer(out / "syncbn")
            run.fit()
            if rank == 0:
                torch.save({"state": run.model.state_dict(),
                            "layers": [type(m).__name__ for m in run.model.modules()]}, out / "syncbn.pt")
        elif stage == "fail":
            trainer(out / "fail", input_hook=fail_on_rank_1(out)).fit()


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), sys.argv[2:])
        status = 0
    except TrainingError as error:
        print(f"rank {world()[0]}: error: {error}", flush=True)
        status = 3
    except RuntimeError as error:
        print(f"rank {world()[0]}: failed: {error}", flush=True)
        status = 1
    exit_process(status)

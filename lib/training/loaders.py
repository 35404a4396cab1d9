"""Data loaders of a training run: shuffled, seeded training batches and sharded validation batches."""
import torch
from torch.utils.data import DataLoader, DistributedSampler

from lib.core import devices
from lib.core.errors import TrainingError


def build_loaders(train_set, val_set, cfg, seed, device):
    """DataLoaders over (uint8 image, label) datasets; train sharded by DistributedSampler.

    Train: shuffled per epoch from (seed, epoch), per-process batch cfg['batch_size'] // world size,
    last partial batch dropped. Val: each process takes every world-size-th image, no padding.
    Batches are pinned in host memory when they go to a GPU (`device`). Worker processes: cfg['num_workers'],
    at most one per CPU core (devices.loader_workers).
    """
    rank, size = devices.world()
    sampler = DistributedSampler(train_set, num_replicas=size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    workers = devices.loader_workers(cfg["num_workers"])
    common = dict(num_workers=workers, pin_memory=torch.device(device).type == "cuda", persistent_workers=workers > 0)
    train = DataLoader(train_set, batch_size=max(1, cfg["batch_size"] // size), sampler=sampler,
                       drop_last=True, **common)
    val = DataLoader(val_set, batch_size=cfg["val_batch_size"], sampler=range(rank, len(val_set), size), **common)
    if len(train) == 0:
        raise TrainingError(f"{len(train_set)} training images make no full batch of {cfg['batch_size']}; "
                            "lower --batch-size or use more data")
    return train, val

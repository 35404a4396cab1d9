"""Data loaders of a training run: shuffled, seeded training batches and sharded validation batches.

Training batches come one of two ways (cfg['data_on_device']): a DataLoader over the (memory-mapped) split, with
worker processes and pinned memory, or `DeviceBatches`, which holds the split on the training device and gathers
each batch there. 'auto' takes the device when the split is a tensor data set, the device is a GPU and the split
fits in RESIDENT_SHARE of the GPU's free memory (the rest stays for the model, its activations and the
allocator); 'on' and 'off' force either way.
"""
import itertools
import os
import signal

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lib.core import devices
from lib.core.errors import ConfigError, TrainingError


DATA_ON_DEVICE = ("auto", "on", "off")
RESIDENT_SHARE = 0.5  # at most this share of the GPU's free memory holds a resident training split


class EpochPermutation:
    """The order of a shard of `size` items in each epoch: torch.randperm(size) from a generator seeded with
    seed + epoch on `device`, the draw DistributedSampler(shuffle=True, seed=seed) makes on the CPU. `skip`: the
    items of this epoch already trained on (a run resumed mid-epoch), which DeviceBatches leaves out."""

    def __init__(self, size, seed, device):
        self.size, self.seed, self.device, self.epoch, self.skip = size, seed, torch.device(device), 0, 0

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = epoch, skip

    def order(self):
        """int64 (size,) on the device: this epoch's permutation."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator, device=self.device)


class DeviceBatches:
    """Training batches gathered on the device from this process's shard of the split, held there as uint8.

    dataset: TensorDataset(uint8 (N, 3, H, W), int64 (N,)); the shard of rank r of w processes is items r, r + w,
    r + 2w, ... of the first (N // w) x w items (all of them in one process), copied to `device` once: every rank
    holds N // w images, as DistributedSampler(drop_last=True) gives each, so every rank takes the same number of
    steps (the last N mod w < w items are never drawn under torchrun). Each epoch (`sampler.set_epoch`) permutes
    the shard on the device (EpochPermutation) and yields `len(self)` batches (uint8 (batch_size, 3, H, W), int64
    (batch_size,)) of consecutive entries of the permutation, the last partial batch dropped: no worker, no
    pinning, no per-sample fetch. In one process these are exactly the batches of the DataLoader path for the
    same seed when both draw on the same device type; a GPU's generator draws other permutations than the CPU's,
    with the same statistics. Under torchrun every global batch takes batch_size images from each rank's shard
    (every image of the shards once per epoch), where the DataLoader path draws it from the whole split.
    """

    def __init__(self, dataset, batch_size, seed, device, rank=0, world_size=1):
        images, labels = dataset.tensors
        self.dataset, self.batch_size = dataset, batch_size
        equal = len(labels) // world_size * world_size
        self.images = images[rank:equal:world_size].to(device)
        self.labels = labels[rank:equal:world_size].to(device)
        self.sampler = EpochPermutation(len(self.labels), seed, device)

    def __len__(self):
        return len(self.labels) // self.batch_size

    def __iter__(self):
        order = self.sampler.order()
        for start in range(self.sampler.skip, len(self) * self.batch_size, self.batch_size):
            picks = order[start:start + self.batch_size]
            yield self.images[picks], self.labels[picks]


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose epoch may begin `skip` items into its order (`set_epoch(epoch, skip)`: a run
    resumed mid-epoch); the order itself is DistributedSampler's, drawn from (seed, epoch)."""

    skip = 0

    def set_epoch(self, epoch, skip=0):
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)


def quiet_worker(worker_id):
    """DataLoader worker start-up: a SIGINT (a terminal's Ctrl-C reaches the whole process group) is left to the
    training process, which stops at its next step needing no more batches; a SIGTERM (`timeout`, a cluster, or
    the training process ending its workers) ends the worker with status 0, which the training process does not
    take for a crash (a worker killed by a signal would raise an error in it wherever it is)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


def shard_bytes(dataset, world_size=1):
    """Bytes of one process's shard of a TensorDataset's tensors (N // world_size items, as DeviceBatches holds)."""
    return sum(tensor[0].nelement() * tensor.element_size() for tensor in dataset.tensors) * \
        (len(dataset) // world_size)


def use_device(choice, train_set, device, world_size=1):
    """Whether the training batches come from DeviceBatches under cfg['data_on_device'] = `choice`. Under torchrun
    'auto' is decided by all ranks together: the device only when every rank's shard fits (devices.on_every_rank),
    so that no rank takes another path, or another number of steps, than the others."""
    if choice not in DATA_ON_DEVICE:
        raise ConfigError(f"data_on_device must be one of {', '.join(DATA_ON_DEVICE)}, got {choice!r}")
    tensors = isinstance(train_set, TensorDataset)
    if choice == "on" and not tensors:
        raise ConfigError("data_on_device 'on' needs the training split as a tensor data set (the decoded cache); "
                          f"got {type(train_set).__name__}: use 'auto' or 'off'")
    if choice != "auto":
        return choice == "on"
    device = torch.device(device)
    if device.type != "cuda" or not tensors:
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return devices.on_every_rank(shard_bytes(train_set, world_size) <= RESIDENT_SHARE * free, device)


def build_loaders(train_set, val_set, cfg, seed, device):
    """(train, val) batches over (uint8 image, label) datasets, sharded over the torchrun processes.

    Train: DeviceBatches when `use_device(cfg['data_on_device'])`, else a DataLoader whose ResumableSampler
    shuffles per epoch from (seed, epoch); per-process batch cfg['batch_size'] // world size, last partial batch
    dropped. Val: a DataLoader; each process takes every world-size-th image, no padding. DataLoader batches are
    pinned in host memory when they go to a GPU; worker processes: cfg['num_workers'], at most this process's
    share of the CPU cores (devices.loader_workers), kept from epoch to epoch, their seeds drawn once from a
    generator of the loader's own: the global random stream (augmentations) then does not depend on when a
    loader first ran, so a resumed run draws what an uninterrupted one does.
    """
    rank, size = devices.world()
    batch = max(1, cfg["batch_size"] // size)
    workers = devices.loader_workers(cfg["num_workers"])
    common = dict(num_workers=workers, pin_memory=torch.device(device).type == "cuda", persistent_workers=workers > 0,
                  worker_init_fn=quiet_worker, generator=torch.Generator().manual_seed(seed) if workers else None)
    if use_device(cfg.get("data_on_device", "auto"), train_set, device, size):
        train = DeviceBatches(train_set, batch, seed, device, rank, size)
    else:
        sampler = ResumableSampler(train_set, num_replicas=size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        train = DataLoader(train_set, batch_size=batch, sampler=sampler, drop_last=True, **common)
    val = DataLoader(val_set, batch_size=cfg["val_batch_size"], sampler=range(rank, len(val_set), size), **common)
    if len(train) == 0:
        raise TrainingError(f"{len(train_set)} training images make no full batch of {cfg['batch_size']}; "
                            "lower --batch-size or use more data")
    return train, val

"""lib/training/loaders.py: the DataLoader path and the device-resident path give the same batches; the choice."""
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from lib.core import devices
from lib.core.errors import ConfigError
from lib.training import loaders
from lib.training.loaders import DeviceBatches, build_loaders, use_device


def split(n=50):
    """TensorDataset(uint8 (n, 3, 4, 4) whose pixels hold the index mod 256, labels = index)."""
    index = torch.arange(n)
    return TensorDataset((index % 256).to(torch.uint8)[:, None, None, None].expand(n, 3, 4, 4).contiguous(), index)


CFG = dict(batch_size=8, val_batch_size=10, num_workers=0)


def epochs_of(train, count):
    batches = []
    for epoch in range(count):
        train.sampler.set_epoch(epoch)
        batches.append([(images.clone(), labels.clone()) for images, labels in train])
    return batches


def test_device_batches_equal_the_loader_batches_for_the_same_seed():
    data = split()
    loader, _ = build_loaders(data, data, {**CFG, "data_on_device": "off"}, seed=3, device="cpu")
    resident, _ = build_loaders(data, data, {**CFG, "data_on_device": "on"}, seed=3, device="cpu")
    assert isinstance(resident, DeviceBatches) and not isinstance(loader, DeviceBatches)
    assert len(resident) == len(loader) == 50 // 8
    ours, theirs = epochs_of(resident, 3), epochs_of(loader, 3)
    for epoch_ours, epoch_theirs in zip(ours, theirs):
        assert len(epoch_ours) == len(epoch_theirs) == 6
        for (images, labels), (their_images, their_labels) in zip(epoch_ours, epoch_theirs):
            assert images.dtype == torch.uint8 and images.shape == (8, 3, 4, 4)
            assert torch.equal(labels, their_labels) and torch.equal(images, their_images)
    assert not torch.equal(ours[0][0][1], ours[1][0][1])  # a new order every epoch


def test_another_seed_gives_other_batches():
    data = split()
    first, second = (DeviceBatches(data, 8, seed, "cpu") for seed in (0, 1))
    assert not torch.equal(next(iter(first))[1], next(iter(second))[1])


def test_each_rank_holds_an_equal_shard_and_an_epoch_visits_every_image_of_them_once():
    data = split(50)  # 3 ranks: 16 images each, as DistributedSampler(drop_last=True); the last 2 never drawn
    ranks = [DeviceBatches(data, 4, 0, "cpu", rank, 3) for rank in range(3)]
    for rank, shard in enumerate(ranks):
        assert torch.equal(shard.labels, torch.arange(rank, 48, 3)) and len(shard) == 4
    for epoch in range(2):
        for shard in ranks:
            shard.sampler.set_epoch(epoch)
        seen = torch.cat([labels for shard in ranks for _, labels in shard])
        assert sorted(seen.tolist()) == list(range(48))


class Files(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index):
        return torch.zeros(3, 4, 4, dtype=torch.uint8), index


def test_the_choice(monkeypatch):
    data = split(100)  # 100 x 48 bytes of images + 100 x 8 of labels: 5,600 bytes
    assert loaders.shard_bytes(data) == 5600 and loaders.shard_bytes(data, 3) == 56 * 33
    assert not use_device("auto", data, "cpu")  # a CPU keeps the DataLoader path unless told
    assert use_device("on", data, "cpu") and not use_device("off", data, "cpu")
    free = {"bytes": 11_200}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 80 * 2**30))
    assert use_device("auto", data, "cuda:0")  # exactly RESIDENT_SHARE of the free memory
    free["bytes"] = 11_199
    assert not use_device("auto", data, "cuda:0") and use_device("auto", data, "cuda:0", world_size=2)
    assert not use_device("auto", Files(), "cuda:0")  # not a tensor data set: the DataLoader reads it
    with pytest.raises(ConfigError, match="needs the training split as a tensor data set"):
        use_device("on", Files(), "cpu")
    with pytest.raises(ConfigError, match="data_on_device must be one of auto, on, off"):
        use_device("yes", data, "cpu")


def test_loader_workers_share_the_cores_among_the_local_ranks(monkeypatch):
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert devices.loader_workers(8) == 8 and devices.loader_workers(32) == 16 and devices.loader_workers(0) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert devices.loader_workers(8) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert devices.loader_workers(8) == 1

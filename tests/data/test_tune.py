"""The tune split: fixed training images held out for recipe searches, never validation images."""
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from lib import data
from lib.study import runs


def test_tune_split_takes_the_last_images_of_every_class():
    labels = np.repeat(np.arange(3), 12)
    picked = data.tune_indices(labels, per_class=10)
    assert len(picked) == 30 and list(picked[:10]) == list(range(2, 12))
    with pytest.raises(data.DataError, match="leaves none to train on"):
        data.tune_indices(np.repeat(np.arange(3), 10), per_class=10)


def test_split_off_tune_keeps_the_two_parts_apart():
    labels = torch.arange(100).repeat_interleave(12)
    images = torch.arange(len(labels), dtype=torch.int32).view(-1, 1, 1, 1)  # image i holds i
    train, tune = data.split_off_tune(TensorDataset(images, labels))
    assert len(train) == 200 and len(tune) == 1000
    assert not set(train.tensors[0].flatten().tolist()) & set(tune.tensors[0].flatten().tolist())
    alone = data.tune_part(TensorDataset(images, labels))
    assert all(torch.equal(a, b) for a, b in zip(alone.tensors, tune.tensors))


def test_a_probe_validates_on_the_tune_split_and_never_reads_validation_images(monkeypatch):
    labels = torch.arange(100).repeat_interleave(12)
    asked = []

    def load_split(root, split, size, limit=None, num_workers=0):
        asked.append(split)
        return TensorDataset(torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8), labels)
    monkeypatch.setattr(data, "load_split", load_split)
    cfg = dict(image_size=32, data_dir="x", train_images=None, val_images=None, num_workers=0, tune_split=True)
    train, val, _, _ = runs.datasets(cfg)
    assert asked == ["train"] and (len(train), len(val)) == (200, 1000)
    asked.clear()
    runs.datasets({**cfg, "tune_split": False})
    assert asked == ["train", "val"]
    asked.clear()
    runs.val_data({**cfg, "tune_split": True})  # evaluations of any run, the Findings' too: validation images
    assert asked == ["val"]

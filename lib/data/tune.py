"""The tune split: a fixed subset of the training images held out for choosing a recipe or a setting.

A search over recipes (a crafting epsilon, a learning rate, a number of epochs) must not read the validation images
on which the report's claims are judged. A run with `tune_split=True` trains on the training images without the tune
split and validates on the tune split instead (lib.study.runs.datasets); evaluations of a run (lib.study.runs.
val_data), and so the Findings, read the validation images only. The split is the last TUNE_PER_CLASS images of
every class in the training list's order: the same images on every machine (1,000 of the full data set's 100,000).
"""
import numpy as np
import torch
from torch.utils.data import TensorDataset

from lib.data.layout import DataError

TUNE_PER_CLASS = 10


def tune_indices(labels, per_class=TUNE_PER_CLASS):
    """Indices (sorted, int64 (n,)) of the tune split among training images of `labels` (int (N,)): the last
    `per_class` images of each class. Raises DataError when a class would keep no training image."""
    labels = np.asarray(labels)
    picked = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) <= per_class:
            raise DataError(f"class {label} has {len(rows)} training images: the tune split takes {per_class} of "
                            "each class and leaves none to train on. Run a recipe search on the whole training list "
                            "(no train_images limit).")
        picked.append(rows[-per_class:])
    return np.sort(np.concatenate(picked))


def tune_part(train_set):
    """The tune split alone of a training split (a TensorDataset of images (N, ...) and labels (N,)): a
    TensorDataset of its images and labels held in memory, without copying the rest."""
    images, labels = train_set.tensors
    tune = torch.from_numpy(tune_indices(labels.numpy()))
    return TensorDataset(images[tune], labels[tune])


def split_off_tune(train_set):
    """(train, tune): a training split (a TensorDataset of images (N, ...) and labels (N,)) without the tune split,
    and the tune split, both TensorDatasets held in memory."""
    images, labels = train_set.tensors
    tune = torch.from_numpy(tune_indices(labels.numpy()))
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[tune] = False
    return TensorDataset(images[keep], labels[keep]), TensorDataset(images[tune], labels[tune])

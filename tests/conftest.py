"""Shared test set-up: the `cuda` marker, small data sets cut from the embedded sample, and constructed attack
summaries.

Tests marked `cuda` need a CUDA GPU: they are skipped, with a reason, where none is visible
(`python -m pytest -m cuda` runs only them; benchmarks/gpu_check.py does so on a GPU machine).
"""
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from lib import data
from lib.attacks.evaluation import summarise

SAMPLE = data.SAMPLE_ROOT


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def sample_lines(split, per_class, classes=(0, 1, 2)):
    """The first `per_class` lines of each of `classes` in the sample's list file."""
    taken, lines = Counter(), []
    for line in (SAMPLE / f"{split}.txt").read_text().splitlines():
        label = int(line.split()[1])
        if label in classes and taken[label] < per_class:
            taken[label] += 1
            lines.append(line)
    return lines


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def make_root(root, train, val):
    """A data set in the official layout holding the given sample lines, images copied."""
    root.mkdir(parents=True)
    shutil.copy(SAMPLE / "categories.txt", root)
    for split, lines in (("train", train), ("val", val)):
        write_lines(root / f"{split}.txt", lines)
        for line in lines:
            rel = line.split()[0]
            (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SAMPLE / "images" / rel, root / "images" / rel)
    return root


@pytest.fixture
def tiny(tmp_path):
    """6 train images (3 classes x 2) and 3 val images."""
    return make_root(tmp_path / "tiny", sample_lines("train", 2), sample_lines("val", 1))




def attack_summary(clean, adv, hits=0, linf=2 / 255, l2=0.5, mse=1e-4):
    """An under-attack summary as lib.report.analysis.under_attack returns it, on len(clean) images: top-1 right
    before (`clean`, bools) and after (`adv`) a targeted attack whose target (class 0) the first `hits` images
    reach; every perturbation has the given L-inf, L2 and mean squared change."""
    clean, adv = np.asarray(clean, bool), np.asarray(adv, bool)
    n = len(clean)
    reached = np.arange(n) < hits
    per_image = {"clean_rank": np.where(clean, 0, 3), "adv_rank": np.where(adv, 0, 7), "target": np.zeros(n, int),
                 "adv_top5": np.where(reached, 0, 9)[:, None].repeat(5, 1), "linf": np.full(n, linf),
                 "l2": np.full(n, l2), "mse": np.full(n, mse)}
    return {**summarise(per_image), "per_image": per_image, "index": np.arange(n)}

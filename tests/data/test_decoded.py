"""lib/data/decoded.py: the MiniPlaces dataset and the decoded, memory-mapped cache."""
from collections import Counter
import os
import pickle

from PIL import Image
import numpy as np
import pytest
import torch

from lib import data
from tests.conftest import sample_lines, write_lines


SAMPLE = data.SAMPLE_ROOT


# ---------------------------------------------------------------- list files and datasets

def test_sample_dataset_reads_official_lists():
    train, val = data.MiniPlaces(SAMPLE, "train"), data.MiniPlaces(SAMPLE, "val")
    assert (len(train), len(val)) == (6000, 1500)
    assert len(train.classes) == 100
    assert train.classes[0] == "/a/abbey" and train.classes[10] == "/b/bakery/shop"
    assert val.samples[0] == (SAMPLE / "images" / "val" / "00000001.jpg", 71)
    assert train.samples[0] == (SAMPLE / "images" / "train" / "a" / "abbey" / "00000001.jpg", 0)
    assert Counter(train.targets) == {label: 60 for label in range(100)}
    assert Counter(val.targets) == {label: 15 for label in range(100)}
    image, label = val[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 128, 128) and label == 71


def test_transform_receives_rgb_pil_image(tiny):
    dataset = data.MiniPlaces(tiny, "val", transform=lambda image: (image.mode, image.size))
    assert dataset[0][0] == ("RGB", (128, 128))


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DataError, match=r"python -m lib data download.*--data-dir"):
        data.MiniPlaces(tmp_path / "nowhere")


def test_unknown_split_is_rejected(tiny):
    with pytest.raises(ValueError, match="train"):
        data.MiniPlaces(tiny, "test")


# ---------------------------------------------------------------- cache

def test_base_size_scales_the_reference_resize():
    assert [data.base_size(s) for s in (128, 64, 32)] == [144, 72, 36]


def cache_files(root):
    return sorted(p.name for p in (root / ".cache").glob("*.npy"))


def test_load_split_decodes_once_into_a_memory_mapped_cache(tiny, monkeypatch):
    first = data.load_split(tiny, "train", size=32)
    images, labels = first.tensors
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 36, 36)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1, 1, 2, 2]
    decoded = data.square_uint8(data.open_rgb(data.MiniPlaces(tiny, "train").samples[3][0]), 36)
    assert torch.equal(images[3], decoded)
    assert [first.path.name] == cache_files(tiny) and first.path.parent == tiny / ".cache"
    assert isinstance(np.load(first.path, mmap_mode="r"), np.memmap)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(data.decoded, "_write_cache", no_decoding)
    second = data.load_split(tiny, "train", size=32)
    assert second.path == first.path and torch.equal(second.tensors[0], images)


def test_cache_follows_the_list_files_and_the_images(tiny):
    first = data.load_split(tiny, "train", size=32).path
    assert data.load_split(tiny, "train", size=64).path != first  # another size: its own cache
    image = tiny / "images" / data.read_list(tiny, "train")[0][0]
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = data.load_split(tiny, "train", size=32).path
    assert touched != first and not first.exists()  # the stale cache of that split and size is gone
    write_lines(tiny / "train.txt", sample_lines("train", 2)[::-1])
    reordered = data.load_split(tiny, "train", size=32)
    assert reordered.path != touched and reordered.tensors[1].tolist() == [2, 2, 1, 1, 0, 0]


def test_cache_goes_elsewhere_when_the_data_root_is_read_only(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(data.decoded.os, "access", lambda path, mode: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    split = data.load_split(tiny, "val", size=32)
    assert split.path.is_relative_to(tmp_path / "user-cache" / "miniplaces")
    assert len(split) == 3


def test_cached_split_pickles_as_its_path(tiny):
    split = data.load_split(tiny, "train", size=32)
    blob = pickle.dumps(split)
    assert len(blob) < split.tensors[0].numel()  # the images are not copied
    again = pickle.loads(blob)
    assert torch.equal(again.tensors[0], split.tensors[0]) and torch.equal(again.tensors[1], split.tensors[1])
    loader = torch.utils.data.DataLoader(split, batch_size=3, num_workers=2)
    assert torch.equal(torch.cat([images for images, _ in loader]), split.tensors[0])


def test_load_split_of_a_missing_image_says_what_to_do(tiny):
    os.remove(tiny / "images" / data.read_list(tiny, "val")[1][0])
    with pytest.raises(data.DataError, match="listed but does not exist.*data verify"):
        data.load_split(tiny, "val", size=32)


@pytest.mark.parametrize("workers", [0, 2])
def test_load_split_of_a_corrupt_image_says_what_to_do(tiny, workers):
    image = tiny / "images" / data.read_list(tiny, "val")[1][0]
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(data.DataError, match="does not decode.*data verify") as error:
        data.load_split(tiny, "val", size=32, num_workers=workers)
    assert "\n" not in str(error.value)  # one line, also from a DataLoader worker
    assert [p.name for p in (tiny / ".cache").iterdir()] == [".lock"]  # nothing half-written is kept


def test_square_uint8_crops_the_centre_of_a_wide_image():
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 255, 0), (50, 0, 150, 100))  # green centre square, red sides
    out = data.square_uint8(image, 36)
    assert out.shape == (3, 36, 36) and out.dtype == torch.uint8
    assert out[1].float().mean() > 250 and out[0].float().mean() < 5


def test_load_split_limit_takes_evenly_spaced_images():
    full = data.MiniPlaces(data.SAMPLE_ROOT, "val")
    subset = data.load_split(data.SAMPLE_ROOT, "val", 32, limit=10)
    images, labels = subset.tensors
    picks = torch.linspace(0, len(full) - 1, 10).round().long().tolist()
    assert images.shape == (10, 3, data.base_size(32), data.base_size(32)) and images.dtype == torch.uint8
    assert labels.tolist() == [full.targets[i] for i in picks]

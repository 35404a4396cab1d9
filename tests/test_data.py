"""lib.data: list files, datasets, the decoded cache, batch transforms (verify and download: test_download.py)."""
from collections import Counter
import os
import pickle

from PIL import Image
from conftest import sample_lines, write_lines
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import data


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


@pytest.mark.parametrize("bad, message", [
    ("train/a/abbey/00000001.jpg", "expected"),
    ("train/a/abbey/00000001.jpg zero", "not an integer"),
    ("train/a/abbey/00000001.jpg 100", "not in 0..99"),
    ("train/a/abbey/00000001.jpg -1", "not in 0..99"),
    ("../../secret.jpg 1", "inside"),
])
def test_read_list_names_file_and_line(tiny, bad, message):
    lines = sample_lines("train", 2)
    write_lines(tiny / "train.txt", lines[:2] + [bad] + lines[2:])
    with pytest.raises(data.DataError, match=rf"train\.txt:3: .*{message}"):
        data.read_list(tiny, "train")


def test_read_categories_rejects_malformed_and_duplicate_ids(tiny):
    write_lines(tiny / "categories.txt", ["/a/abbey 0", "/a/airport_terminal"])
    with pytest.raises(data.DataError, match=r"categories\.txt:2: "):
        data.read_categories(tiny)
    write_lines(tiny / "categories.txt", ["/a/abbey 0", "/b/bar 0"])
    with pytest.raises(data.DataError, match=r"categories\.txt:1: .*more than once"):
        data.read_categories(tiny)


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


# ---------------------------------------------------------------- batch transforms

def identity_augment(size, **overrides):
    settings = dict(scale=(1, 1), ratio=(1, 1), max_rotation=0, jitter=(1, 1), flip=False)
    return data.TrainAugment(size, **{**settings, **overrides})


def random_images(n=8, side=36):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_train_augment_shape_dtype_range(dtype):
    images = random_images()
    images = images if dtype == torch.uint8 else images / 255
    out = data.TrainAugment(size=32)(images)
    assert out.dtype == torch.float32 and out.shape == (8, 3, 32, 32)
    assert 0 <= out.min() and out.max() <= 1


def test_train_augment_is_deterministic_under_a_seed():
    augment, images = data.TrainAugment(size=32), random_images()
    torch.manual_seed(0)
    first = augment(images)
    torch.manual_seed(0)
    assert torch.equal(first, augment(images))
    torch.manual_seed(1)
    assert not torch.allclose(first, augment(images))


def test_train_augment_without_randomness_is_a_plain_resize():
    images = random_images()
    for seed in range(4):  # both interpolation modes leave an image at the output size unchanged
        torch.manual_seed(seed)
        assert torch.allclose(identity_augment(36)(images), images / 255, atol=1e-5)
    augment = identity_augment(32)
    augment.modes = ("bilinear",)
    expected = F.interpolate(images / 255, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(augment(images), expected, atol=1e-5)


def test_train_augment_flip_flips():
    images = random_images(16, 32) / 255
    torch.manual_seed(0)
    out = identity_augment(32, flip=True)(images)
    same = [torch.allclose(o, i, atol=1e-6) for o, i in zip(out, images)]
    flipped = [torch.allclose(o, i.flip(-1), atol=1e-6) for o, i in zip(out, images)]
    assert all(s != f for s, f in zip(same, flipped))
    assert any(same) and any(flipped)


def test_train_augment_crops_stay_inside_the_rotated_image():
    augment = data.TrainAugment(size=32, scale=(0.25, 1.0), max_rotation=15.0)
    torch.manual_seed(0)
    theta = augment.sample_affine(2000)
    corners = torch.tensor([[-1.0, -1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, 1]]).T
    points = theta @ corners  # (n, 2, 4): crop corners in input coordinates
    assert points.abs().max() <= 1 + 1e-5
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0].abs())
    assert angles.abs().max() <= torch.deg2rad(torch.tensor(15.0)) + 1e-5
    assert angles.abs().max() > torch.deg2rad(torch.tensor(10.0))  # it does rotate


def test_train_augment_jitters_each_channel():
    images = torch.full((64, 3, 32, 32), 0.5)
    torch.manual_seed(0)
    gains = identity_augment(32, jitter=(0.85, 1.15))(images) / 0.5
    assert torch.allclose(gains, gains[..., :1, :1].expand_as(gains))  # one gain per channel
    assert 0.85 - 1e-6 <= gains.min() and gains.max() <= 1.15 + 1e-6
    assert gains.std() > 0.05


def test_train_augment_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        data.TrainAugment(scale=(0.5, 2.0))


def test_eval_transform_is_a_centre_crop():
    images = random_images(2, 144)
    out = data.EvalTransform(128)(images)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 128, 128)
    assert torch.equal(out, images[..., 8:136, 8:136] / 255)
    small = random_images(2, 36)
    assert torch.equal(data.EvalTransform(32)(small), small[..., 2:34, 2:34] / 255)
    assert data.EvalTransform(32)(random_images(2, 128)).shape == (2, 3, 32, 32)


def test_load_split_limit_takes_evenly_spaced_images():
    full = data.MiniPlaces(data.SAMPLE_ROOT, "val")
    subset = data.load_split(data.SAMPLE_ROOT, "val", 32, limit=10)
    images, labels = subset.tensors
    picks = torch.linspace(0, len(full) - 1, 10).round().long().tolist()
    assert images.shape == (10, 3, data.base_size(32), data.base_size(32)) and images.dtype == torch.uint8
    assert labels.tolist() == [full.targets[i] for i in picks]

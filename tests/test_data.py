"""lib.data: list files, datasets, cache, batch transforms, verify, download (no internet)."""
import functools
import io
import shutil
import socket
import tarfile
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lib import data

SAMPLE = data.SAMPLE_ROOT


# ---------------------------------------------------------------- helpers

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


def test_load_split_decodes_to_uint8_cache(tiny):
    cache = data.load_split(tiny, "train", size=32)
    images, labels = cache.tensors
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 36, 36)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1, 1, 2, 2]
    streamed = data.DecodedMiniPlaces(tiny, "train", size=32)
    assert torch.equal(streamed[3][0], images[3]) and streamed[3][1] == 1


def test_square_uint8_crops_the_centre_of_a_wide_image():
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 255, 0), (50, 0, 150, 100))  # green centre square, red sides
    out = data.square_uint8(image, 36)
    assert out.shape == (3, 36, 36) and out.dtype == torch.uint8
    assert out[1].float().mean() > 250 and out[0].float().mean() < 5


def test_fits_in_memory():
    assert data.fits_in_memory(10, 128)
    assert not data.fits_in_memory(10 ** 12, 128)


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


# ---------------------------------------------------------------- verify

def test_verify_sample_is_clean():
    problems, counts = data.verify(SAMPLE)
    assert problems == []
    assert counts == {
        "train": {"images": 6000, "per_class_min": 60, "per_class_max": 60, "classes": 100},
        "val": {"images": 1500, "per_class_min": 15, "per_class_max": 15, "classes": 100},
    }


def test_verify_reports_every_problem_with_file_and_line(tiny):
    good = (tiny / "images" / "train" / "a" / "abbey" / "00000001.jpg").read_bytes()
    (tiny / "images" / "train" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    lines = sample_lines("train", 2) + [
        "train/truncated.jpg 0",          # line 7
        "train/a/abbey/00000002.jpg 100",  # line 8
        "train/a/abbey/missing.jpg 1",    # line 9
        "train/a/abbey/00000001.jpg",     # line 10
    ]
    write_lines(tiny / "train.txt", lines)
    (tiny / "val.txt").unlink()
    problems, counts = data.verify(tiny)
    expected = [("train.txt:7:", "truncated.jpg does not decode"), ("train.txt:8:", "label 100"),
                ("train.txt:9:", "missing.jpg does not exist"), ("train.txt:10:", "expected"),
                ("val.txt:", "missing")]
    assert len(problems) == len(expected)
    for where, what in expected:
        assert any(where in p and what in p for p in problems), (where, what, problems)
    assert counts["train"] == {"images": 6, "per_class_min": 0, "per_class_max": 2, "classes": 3}


# ---------------------------------------------------------------- download

class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder, base URL): `folder` served over HTTP on 127.0.0.1 by a thread."""
    folder = tmp_path / "www"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_archive(path, root, prefix="", lists=True):
    """A .tar.gz of `root`'s images/ (and list files) under `prefix`."""
    names = ["images"] + (list(data.LIST_FILES) if lists else [])
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            tar.add(root / name, arcname=f"{prefix}{name}")
    return path


def add_member(archive, name, kind=tarfile.REGTYPE, linkname=""):
    """Append one member to an uncompressed .tar."""
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, linkname, 4 if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def test_download_extracts_verifies_and_keeps_a_verified_set(tiny, server, tmp_path):
    folder, url = server
    make_archive(folder / "data.tar.gz", tiny, prefix="data/")
    target = tmp_path / "datasets" / "miniplaces"
    assert data.download(target, f"{url}/data.tar.gz", timeout=5) == target
    assert data.verify(target)[0] == []
    assert len(data.MiniPlaces(target, "train")) == 6
    assert leftovers(target.parent) == ["miniplaces"]
    (folder / "data.tar.gz").unlink()  # a second call must neither fetch nor overwrite
    assert data.download(target, f"{url}/data.tar.gz", timeout=5) == target


def test_download_fetches_list_files_the_archive_lacks(tiny, server, tmp_path):
    folder, url = server
    make_archive(folder / "data.tar.gz", tiny, lists=False)  # the official archive: images/ only
    (folder / "lists").mkdir()
    for name in data.LIST_FILES:
        shutil.copy(tiny / name, folder / "lists")
    target = data.download(tmp_path / "mp", f"{url}/data.tar.gz", timeout=5, lists_url=f"{url}/lists")
    assert data.read_list(target, "val") == data.read_list(tiny, "val")


@pytest.mark.parametrize("name, kind, linkname", [
    ("../evil", tarfile.REGTYPE, ""),
    ("/tmp/evil-absolute", tarfile.REGTYPE, ""),
    ("images/link", tarfile.SYMTYPE, "../../evil"),
    ("images/hard", tarfile.LNKTYPE, "../evil"),
])
def test_download_refuses_members_outside_the_target(tiny, server, tmp_path, name, kind, linkname):
    folder, url = server
    archive = folder / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tiny / "images", arcname="images")
    add_member(archive, name, kind, linkname)
    target = tmp_path / "out" / "mp"
    with pytest.raises(data.DataError, match=rf"refusing to extract .*{name}"):
        data.download(target, f"{url}/data.tar", timeout=5)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()
    assert leftovers(target.parent) == []


def test_download_of_a_truncated_archive_fails_clearly(tiny, server, tmp_path):
    folder, url = server
    whole = make_archive(tmp_path / "whole.tar.gz", tiny).read_bytes()
    (folder / "data.tar.gz").write_bytes(whole[: len(whole) // 2])
    target = tmp_path / "out" / "mp"
    with pytest.raises(data.DataError, match="corrupt or truncated"):
        data.download(target, f"{url}/data.tar.gz", timeout=5)
    assert leftovers(target.parent) == []


def test_download_from_an_unreachable_url_fails_with_one_clear_message(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.tar.gz"
    with pytest.raises(data.DataError, match=rf"could not download .* from {url}: .*--data-dir"):
        data.download(tmp_path / "mp", url, timeout=5)
    assert leftovers(tmp_path) == []


def test_download_leaves_other_folders_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(data.DataError, match="not a MiniPlaces data set"):
        data.download(tmp_path / "mine", "http://127.0.0.1:9/x.tar.gz", timeout=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_load_split_limit_takes_evenly_spaced_images():
    full = data.MiniPlaces(data.SAMPLE_ROOT, "val")
    subset = data.load_split(data.SAMPLE_ROOT, "val", 32, limit=10)
    images, labels = subset.tensors
    picks = torch.linspace(0, len(full) - 1, 10).round().long().tolist()
    assert images.shape == (10, 3, data.base_size(32), data.base_size(32)) and images.dtype == torch.uint8
    assert labels.tolist() == [full.targets[i] for i in picks]

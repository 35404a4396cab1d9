"""MiniPlaces data: list-file dataset, in-memory cache, batch transforms, verify, download.

On disk (the official layout, also that of the embedded sample):

    ROOT/categories.txt    "/a/abbey 0"                    class name and id, one per line
    ROOT/train.txt         "train/a/abbey/00000001.jpg 0"  path relative to ROOT/images, label
    ROOT/val.txt           "val/00000001.jpg 71"
    ROOT/images/...        128x128 RGB JPEGs

The fast input pipeline decodes every JPEG once into a uint8 tensor cache
(`load_split`), then augments whole batches on their device (`TrainAugment`,
`EvalTransform`). Images leave the transforms as float pixels in [0, 1]; models
normalise themselves with `Normalize`.
"""
import functools
import http.client
import math
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from tqdm.auto import tqdm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ROOT = PROJECT_ROOT / "data" / "miniplaces-sample"
DATA_URL = "https://places.csail.mit.edu/miniplaces/data/data.tar.gz"
# The official archive holds images/ only; its list files live in the development kit.
LISTS_URL = "https://raw.githubusercontent.com/CSAILVision/miniplaces/master/data"
LIST_FILES = ("categories.txt", "train.txt", "val.txt")
SPLITS = ("train", "val")
NUM_CLASSES = 100
CACHE_MEMORY_FRACTION = 0.5  # the uint8 cache may take at most this share of available RAM


class DataError(Exception):
    """A user-caused data problem; the message says what is wrong and what to do."""


class Normalize(nn.Module):
    """First module of every model: pixel images in [0, 1] -> ImageNet-normalised.

    Input and output: float (B, 3, H, W).
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


# ---------------------------------------------------------------- list files

def _missing(path):
    return DataError(
        f"{path} not found: no MiniPlaces data set there. Run `python -m lib data download ROOT` "
        f"to fetch the full data set, pass --data-dir with a folder holding {', '.join(LIST_FILES)} "
        f"and images/, or leave --data-dir out to use the embedded sample ({SAMPLE_ROOT})."
    )


def _parse_file(path, parse_line):
    """Parse every non-blank line of `path`: ([(line number, value)], ['path:line: problem'])."""
    entries, problems = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append((number, parse_line(line)))
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
    return entries, problems


def _two_fields(line, first):
    fields = line.split()
    if len(fields) != 2:
        raise ValueError(f"expected '<{first}> <integer>', got {line!r}")
    try:
        return fields[0], int(fields[1])
    except ValueError:
        raise ValueError(f"{fields[1]!r} is not an integer") from None


def _category_line(line):
    return _two_fields(line, "name")


def _list_line(line):
    """'train/a/abbey/00000001.jpg 0' -> (relative path, label); ValueError says what is wrong."""
    rel, label = _two_fields(line, "path")
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ValueError(f"path {rel!r} must be relative to images/ and stay inside it")
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label {label} is not in 0..{NUM_CLASSES - 1}")
    return rel, label


def _raise_first(problems, root):
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}. Fix the file; `python -m lib data verify {root}` "
                        "lists every problem.")


def _categories(path):
    """(names indexed by id, problems) for a categories.txt."""
    entries, problems = _parse_file(path, _category_line)
    ids = Counter(label for _, (_, label) in entries)
    for number, (name, label) in entries:
        if ids[label] > 1:
            problems.append(f"{path}:{number}: id {label} of {name!r} is used more than once")
    if not problems and sorted(ids) != list(range(len(ids))):
        problems.append(f"{path}: ids must be 0..{len(ids) - 1}, got {sorted(ids)}")
    names = [name for _, (name, _) in sorted(entries, key=lambda entry: entry[1][1])]
    return names, problems


def read_categories(root):
    """Class names indexed by id from ROOT/categories.txt ('/a/abbey 0' per line)."""
    path = Path(root) / "categories.txt"
    if not path.is_file():
        raise _missing(path)
    names, problems = _categories(path)
    _raise_first(problems, root)
    return names


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def read_list(root, split):
    """[(path relative to ROOT/images, label)] from ROOT/<split>.txt, in file order."""
    _check_split(split)
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise _missing(path)
    entries, problems = _parse_file(path, _list_line)
    _raise_first(problems, root)
    return [value for _, value in entries]


# ---------------------------------------------------------------- datasets

def _open_rgb(path):
    with Image.open(path) as image:
        return image.convert("RGB")


def _to_tensor(image):
    """PIL RGB image -> contiguous uint8 (3, H, W); numpy's transposing copy is far faster
    than torch's for many small images."""
    return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())


def base_size(size):
    """Side (pixels) the images are cached at for output `size`: the reference's 144 for 128."""
    return round(size * 144 / 128)


def square_uint8(image, side):
    """PIL image -> uint8 (3, side, side): short side resized (antialiased) to `side`, centre crop."""
    if image.size != (side, side):
        from torchvision.transforms import functional as TF  # imported here: importing torchvision takes seconds
        image = TF.center_crop(TF.resize(image, side, antialias=True), side)
    return _to_tensor(image)


class MiniPlaces(Dataset):
    """The official list files as a dataset of (image, label).

    .samples: [(absolute Path, label)]; .targets: [label]; .classes: names indexed by id.
    An item is (transform(PIL RGB image), label) or, without a transform, (uint8 (3, H, W), label).
    """

    def __init__(self, root=SAMPLE_ROOT, split="train", transform=None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.classes = read_categories(self.root)
        images = self.root / "images"
        self.samples = [(images / rel, label) for rel, label in read_list(self.root, split)]
        self.targets = [label for _, label in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        image = _open_rgb(path)
        return (self.transform(image) if self.transform else _to_tensor(image)), label


class DecodedMiniPlaces(MiniPlaces):
    """Items decoded on the fly to the cache format of `load_split`: (uint8 (3, B, B), label),
    B = base_size(size). The streaming path for data sets larger than memory."""

    def __init__(self, root=SAMPLE_ROOT, split="train", size=128):
        super().__init__(root, split, transform=functools.partial(square_uint8, side=base_size(size)))
        self.size = size


def _stack_images(items):
    """Collate [(uint8 (3, B, B), label)] -> uint8 (n, 3, B, B). Copies go through numpy: many
    small torch copies each wake torch's thread pool, which stalls on a busy CPU."""
    return torch.from_numpy(np.stack([image.numpy() for image, _ in items]))


def load_split(root, split, size, num_workers=0, batch_size=256, limit=None):
    """Decode every image of a split once: TensorDataset(uint8 (N, 3, B, B), int64 (N,)),
    B = base_size(size). `num_workers` decoding processes (0: in this process). `limit`: only
    that many images, evenly spaced over the list file (the same ones every time)."""
    dataset = DecodedMiniPlaces(root, split, size)
    targets = dataset.targets
    if limit is not None and limit < len(dataset):
        picks = torch.linspace(0, len(dataset) - 1, limit).round().long().tolist()
        dataset, targets = Subset(dataset, picks), [targets[i] for i in picks]
    side = base_size(size)
    images = np.empty((len(dataset), 3, side, side), dtype=np.uint8)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_stack_images)
    start = 0
    with tqdm(total=len(dataset), unit="img", desc=f"decode {split} at {side}px") as bar:
        for batch in loader:
            images[start:start + len(batch)] = batch.numpy()
            start += len(batch)
            bar.update(len(batch))
    return TensorDataset(torch.from_numpy(images), torch.tensor(targets, dtype=torch.int64))


def _cgroup_memory_left():
    """Bytes left under a cgroup-v2 memory limit, or None when there is none."""
    group = Path("/sys/fs/cgroup")
    try:
        limit = (group / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((group / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def fits_in_memory(num_images, size):
    """Whether a uint8 cache of `num_images` at base_size(size) takes at most
    CACHE_MEMORY_FRACTION of the RAM available now (the rest stays for training)."""
    available = psutil.virtual_memory().available
    cgroup = _cgroup_memory_left()
    if cgroup is not None:
        available = min(available, cgroup)
    return num_images * 3 * base_size(size) ** 2 <= CACHE_MEMORY_FRACTION * available


# ---------------------------------------------------------------- batch transforms

def _to_float(images):
    """uint8 pixels -> float32 in [0, 1]; float stays float32."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _uniform(low_high, u):
    low, high = low_high
    return low + (high - low) * u


class TrainAugment(nn.Module):
    """The reference's training augmentation for a batch, on the batch's device.

    Rotation by up to +-max_rotation degrees, a random-sized crop (area share `scale`,
    aspect `ratio`) of the largest axis-aligned square inside the rotated image (no
    empty corners), and a horizontal flip form one affine map per sample, applied to
    the whole batch by a single grid_sample (bilinear or nearest, chosen per batch).
    Then each channel is scaled by U(jitter). Randomness comes from torch's global
    generators, so torch.manual_seed makes it repeatable.

    Input: uint8 or float (B, 3, R, R); output: float32 (B, 3, size, size) in [0, 1].
    """

    def __init__(self, size=128, scale=(0.25, 1.0), ratio=(0.8, 1.2), max_rotation=15.0,
                 jitter=(0.85, 1.15), flip=True):
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}")
        self.size, self.scale, self.ratio = size, scale, ratio
        self.max_rotation, self.jitter, self.flip = max_rotation, jitter, flip
        self.modes = ("bilinear", "nearest")

    def sample_affine(self, n, device=None):
        """n random maps for F.affine_grid: (n, 2, 3), output -> input normalised coordinates."""
        u = torch.rand(6, n, device=device)
        angle = math.radians(self.max_rotation) * (2 * u[0] - 1)
        cos, sin = angle.cos(), angle.sin()
        valid = 1 / (cos.abs() + sin.abs())  # half-side of the largest square inside the rotated image
        area = _uniform(self.scale, u[1])
        aspect = torch.exp(_uniform((math.log(self.ratio[0]), math.log(self.ratio[1])), u[2]))
        half_w = torch.minimum(valid * (area * aspect).sqrt(), valid)
        half_h = torch.minimum(valid * (area / aspect).sqrt(), valid)
        centre_x = (valid - half_w) * (2 * u[3] - 1)
        centre_y = (valid - half_h) * (2 * u[4] - 1)
        if self.flip:
            half_w = torch.where(u[5] < 0.5, -half_w, half_w)
        # input point = rotation @ (centre + diag(half_w, half_h) @ output point)
        return torch.stack([
            torch.stack([cos * half_w, -sin * half_h, cos * centre_x - sin * centre_y], dim=1),
            torch.stack([sin * half_w, cos * half_h, sin * centre_x + cos * centre_y], dim=1),
        ], dim=1)

    def forward(self, images):
        images = _to_float(images)
        n = images.shape[0]
        grid = F.affine_grid(self.sample_affine(n, images.device), [n, 3, self.size, self.size],
                             align_corners=False)
        mode = self.modes[torch.randint(len(self.modes), ()).item()]
        out = F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)
        gains = torch.empty(n, 3, 1, 1, device=images.device).uniform_(*self.jitter)
        return (out * gains).clamp_(0, 1)


class EvalTransform(nn.Module):
    """The reference's evaluation transform for a batch of cached images.

    Centre crop of the share size/base_size(size) of each side (exactly `size` pixels
    for images cached at base_size(size)), resized to `size` when it is not already.
    Input: uint8 or float (B, 3, H, W); output: float32 (B, 3, size, size) in [0, 1].
    """

    def __init__(self, size=128):
        super().__init__()
        self.size = size

    def forward(self, images):
        height, width = images.shape[-2:]
        crop_h, crop_w = (round(side * self.size / base_size(self.size)) for side in (height, width))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        out = _to_float(images[..., top:top + crop_h, left:left + crop_w])
        if (crop_h, crop_w) != (self.size, self.size):
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear",
                                antialias=True, align_corners=False)
        return out.clamp_(0, 1)


# ---------------------------------------------------------------- verify

def _decode_problem(path):
    """None when `path` exists and decodes fully with Pillow, else what is wrong."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        _open_rgb(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{path} does not decode ({exc})"
    return None


def _verify_split(root, split, num_classes, workers):
    """(problems, counts) for one split's list file and images."""
    path = root / f"{split}.txt"
    if not path.is_file():
        return [f"{path}: missing"], {"images": 0, "per_class_min": 0, "per_class_max": 0, "classes": 0}
    entries, problems = _parse_file(path, _list_line)
    files = [root / "images" / rel for _, (rel, _) in entries]
    with ThreadPoolExecutor(workers) as pool:
        checks = list(tqdm(pool.map(_decode_problem, files), total=len(files), unit="img",
                           desc=f"verify {split}"))
    per_class = Counter()
    for (number, (_, label)), problem in zip(entries, checks):
        if problem:
            problems.append(f"{path}:{number}: {problem}")
        else:
            per_class[label] += 1
    counts = [per_class[label] for label in range(max(num_classes, max(per_class, default=-1) + 1))]
    return problems, {"images": sum(counts), "per_class_min": min(counts, default=0),
                      "per_class_max": max(counts, default=0), "classes": len(per_class)}


def verify(root, workers=8):
    """Check a data set without stopping at the first problem.

    Returns (problems, counts): problems as 'file:line: what is wrong' (or 'file: what');
    counts[split] = {'images', 'per_class_min', 'per_class_max', 'classes'} over the
    images that are listed correctly, exist and decode (min/max over every category).
    """
    root = Path(root)
    categories = root / "categories.txt"
    if categories.is_file():
        names, problems = _categories(categories)
    else:
        names, problems = [], [f"{categories}: missing"]
    counts = {}
    for split in SPLITS:
        split_problems, counts[split] = _verify_split(root, split, len(names), workers)
        problems += split_problems
    return problems, counts


# ---------------------------------------------------------------- download

def _unreachable(url, reason):
    return DataError(
        f"could not download the MiniPlaces data set from {url}: {reason}. Download it by hand "
        f"(the archive's images/ plus {', '.join(LIST_FILES)} from {LISTS_URL}) into a folder and "
        f"pass --data-dir FOLDER, or leave --data-dir out to use the embedded sample ({SAMPLE_ROOT})."
    )


def _fetch(url, dest, timeout):
    """Download `url` to `dest` with a progress bar (written as dest.part, then renamed)."""
    part = dest.with_name(dest.name + ".part")
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as file:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name) as bar:
                while chunk := response.read(1 << 20):
                    received += file.write(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, bad replies
        raise _unreachable(url, getattr(exc, "reason", exc)) from exc
    if total and received != total:
        raise _unreachable(url, f"the transfer stopped after {received} of {total} bytes")
    part.replace(dest)


def _check_member(member, dest):
    """DataError unless extracting `member` into `dest` only writes regular files/dirs inside it."""
    target = (dest / member.name).resolve()
    inside = not Path(member.name).is_absolute() and target.is_relative_to(dest)
    if member.issym():
        inside = inside and (target.parent / member.linkname).resolve().is_relative_to(dest)
    elif member.islnk():
        inside = inside and (dest / member.linkname).resolve().is_relative_to(dest)
    elif not (member.isfile() or member.isdir()):
        raise DataError(f"refusing to extract the archive: member {member.name!r} is not a file, "
                        "directory or link. The archive is not the MiniPlaces one.")
    if not inside:
        link = f" -> {member.linkname!r}" if member.issym() or member.islnk() else ""
        raise DataError(f"refusing to extract the archive: member {member.name!r}{link} would land "
                        "outside the target folder. The archive is unsafe; nothing was kept.")


def _extract(archive, dest):
    """Extract `archive` into `dest`, checking every member before it is written
    (and through tarfile's own 'data' filter where this Python has it)."""
    dest = dest.resolve()
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive) as tar:
            for member in tqdm(tar, unit="file", desc=f"extract {archive.name}"):
                _check_member(member, dest)
                tar.extract(member, dest, **safe)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"could not extract {archive.name}: {exc}. The download is corrupt or "
                        "truncated: run the download again; nothing was kept.") from exc


def _find_data_root(folder):
    """The folder holding images/ or train.txt: `folder` itself or one level down (e.g. data/)."""
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if (candidate / "train.txt").is_file() or (candidate / "images").is_dir():
            return candidate
    raise DataError("the downloaded archive holds neither images/ nor train.txt: it is not "
                    "the MiniPlaces archive.")


def _existing(root):
    """True when `root` already holds a verified data set; DataError when it holds anything else."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return False
    if not (root / "train.txt").is_file():
        raise DataError(f"{root} exists and is not a MiniPlaces data set; choose a new or empty folder.")
    problems, _ = verify(root)
    if problems:
        raise DataError(f"{root} already holds a data set with {len(problems)} problems "
                        f"(first: {problems[0]}); it was left untouched. Remove it, or run "
                        f"`python -m lib data verify {root}` to see every problem.")
    return True


def download(root, url=DATA_URL, timeout=30, lists_url=LISTS_URL):
    """Fetch, extract and verify the MiniPlaces data set into `root`; returns `root`.

    Everything happens in a temporary folder next to `root` that only replaces it once
    the data verifies, so `root` holds a verified data set or nothing. List files the
    archive lacks are fetched from `lists_url`. An existing verified data set is kept.
    """
    root = Path(root).resolve()
    if _existing(root):
        print(f"{root} already holds a verified MiniPlaces data set; nothing downloaded.")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.download-", dir=root.parent))
    try:
        archive = work / (Path(urllib.parse.urlparse(url).path).name or "data.tar.gz")
        _fetch(url, archive, timeout)
        _extract(archive, work / "extract")
        data = _find_data_root(work / "extract")
        for name in LIST_FILES:
            if not (data / name).is_file():
                _fetch(f"{lists_url}/{name}", data / name, timeout)
        problems, _ = verify(data)
        if problems:
            raise DataError(f"the downloaded data set has {len(problems)} problems (first: "
                            f"{problems[0]}); nothing was kept. Run the download again.")
        if root.exists():
            root.rmdir()  # empty, checked by _existing
        data.replace(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root

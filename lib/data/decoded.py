"""MiniPlaces images as datasets, and the decoded cache.
"""
import hashlib
import os
from pathlib import Path
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from lib.core.devices import loader_workers
from lib.core.locks import exclusive
from lib.core.progress import note
from lib.core.space import reporting_full_disk
from lib.data.layout import DECODE_ERRORS, SAMPLE_ROOT, DataError, open_rgb, read_categories, read_list


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
        image = open_rgb(path)
        return (self.transform(image) if self.transform else _to_tensor(image)), label


CACHE_FORMAT = 1  # part of every cache key: raise it whenever decoding changes


def evenly_spaced(count, limit=None):
    """Indices of `limit` items evenly spaced over `count` (all of them when limit is None or >= count)."""
    if limit is None or limit >= count:
        return list(range(count))
    return torch.linspace(0, count - 1, limit).round().long().tolist()


def cache_dir(root):
    """The folder for decoded caches of the data set at `root`: ROOT/.cache, or when ROOT is not
    writable $XDG_CACHE_HOME/miniplaces/<hash of ROOT> ($XDG_CACHE_HOME defaults to ~/.cache)."""
    folder = Path(root) / ".cache"
    try:
        folder.mkdir(exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "miniplaces" / hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cache_key(root, entries, side):
    """Hex digest of what a decoded cache holds: the list entries (path, label) in order, each
    image file's size and mtime, the side and CACHE_FORMAT. DataError when a listed file is missing.
    (Plain os.stat on string paths: for 100,000 files pathlib would cost seconds.)"""
    images = os.path.join(root, "images")
    lines = [f"miniplaces-decoded {CACHE_FORMAT} {side}"]
    for rel, label in entries:
        try:
            stat = os.stat(os.path.join(images, rel))
        except FileNotFoundError:
            raise DataError(f"{os.path.join(images, rel)} is listed but does not exist. Run "
                            f"`python -m lib data verify {root}` to see every problem.") from None
        lines.append(f"{rel} {label} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]


class _DecodeFiles(Dataset):
    """Item i: (files[i] as uint8 numpy (3, side, side) (see square_uint8), None), or (None, what is
    wrong) when it does not decode: problems travel back from DataLoader workers as plain data."""

    def __init__(self, files, side):
        self.files, self.side = files, side

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        try:
            return square_uint8(open_rgb(self.files[index]), self.side).numpy(), None
        except DECODE_ERRORS as exc:
            return None, f"{self.files[index]} does not decode ({exc})"


def _stack(items):
    """Collate [(image, problem)] -> (uint8 (n, 3, side, side) or None, [problems])."""
    problems = [problem for _, problem in items if problem]
    return (None if problems else np.stack([image for image, _ in items])), problems


def _write_cache(path, files, side, num_workers, desc):
    """Decode `files` into the .npy file `path` (uint8 (N, 3, side, side)), written through a
    temporary file and renamed. Under a lock on the folder: one process decodes, the others
    wait and then use its file. Older caches of the same split, side and count are removed. The file's space is
    reserved first, so that a full disk stops the decoding at once with DiskFullError (a memory map written past
    a full disk would kill the process with SIGBUS instead)."""
    with exclusive(path.parent / ".lock", f"waiting for another process to decode {path.name}"):
        if path.exists():
            return
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        began = time.perf_counter()
        note(f"{desc}: {len(files):,} images into {path.parent}")
        try:
            images = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(len(files), 3, side, side))
            with reporting_full_disk("the decoded cache", path), open(part, "r+b") as reserved:
                os.posix_fallocate(reserved.fileno(), 0, os.path.getsize(part))
            loader = DataLoader(_DecodeFiles(files, side), batch_size=256, num_workers=loader_workers(num_workers),
                                collate_fn=_stack)
            start = 0
            with tqdm(total=len(files), unit="img", desc=desc) as bar:
                for batch, problems in loader:
                    if problems:
                        raise DataError(f"{problems[0]}. Run `python -m lib data verify ROOT` to see every "
                                        "problem; nothing was cached.")
                    images[start:start + len(batch)] = batch
                    start += len(batch)
                    bar.update(len(batch))
            images.flush()
            del images
            part.replace(path)
            note(f"decoded {len(files):,} images in {time.perf_counter() - began:.0f} s")
        finally:
            part.unlink(missing_ok=True)
        prefix = path.name.rsplit("-", 1)[0]
        for old in path.parent.glob(f"{prefix}-*.npy"):
            if old != path:
                old.unlink()


class CachedSplit(TensorDataset):
    """TensorDataset(uint8 (N, 3, B, B) images, int64 (N,) labels) whose images are a copy-on-write
    memory map of a decoded cache file: processes mapping the same file share its pages, and a
    pickled CachedSplit (e.g. sent to a DataLoader worker) maps the file again instead of copying it."""

    def __init__(self, path, labels):
        self.path = Path(path)
        super().__init__(torch.from_numpy(np.load(self.path, mmap_mode="c")), labels)

    def __reduce__(self):
        return CachedSplit, (self.path, self.tensors[1])


def load_split(root, split, size, limit=None, num_workers=0):
    """A split's images decoded once per data set: CachedSplit (uint8 (N, 3, B, B), int64 (N,)),
    B = base_size(size).

    The first call decodes the JPEGs (`num_workers` processes; 0: this one) into a cache file under
    cache_dir(root), keyed by the list entries, the image files' sizes and mtimes and B; every later
    call, in any process, maps that file in seconds. `limit`: only that many images, evenly spaced
    over the list file (the same ones every time; cached on their own).
    """
    root = Path(root)
    entries = read_list(root, split)
    entries = [entries[i] for i in evenly_spaced(len(entries), limit)]
    side = base_size(size)
    path = cache_dir(root) / f"{split}-{side}px-{len(entries)}-{_cache_key(root, entries, side)}.npy"
    if not path.exists():
        files = [root / "images" / rel for rel, _ in entries]
        _write_cache(path, files, side, num_workers, desc=f"decode {split} at {side}px (once)")
    return CachedSplit(path, torch.tensor([label for _, label in entries], dtype=torch.int64))

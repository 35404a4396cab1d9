"""The MiniPlaces data set on disk: `verify` a folder, `download` the official release into one.

`download` fetches the official archive (its MD5 checked before anything is extracted), extracts it
safely, adds the development kit's list files and keeps the result only once it verifies. The
archive's `images/test/` (no list file) and `objects/` folders are kept as they come; nothing reads them.
`lib.data`, the module other code imports, re-exports `verify`, `download` and the constants below.
"""
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
import hashlib
import http.client
from pathlib import Path
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zlib

from tqdm.auto import tqdm

from lib.data.layout import (
    DECODE_ERRORS, LIST_FILES, SAMPLE_ROOT, SPLITS, DataError, _categories, _list_line, _parse_file, open_rgb
)


# The development kit's README (CSAILVision/miniplaces) links this archive; DATA_MD5 is its checksum.
DATA_URL = "http://miniplaces.csail.mit.edu/data/data.tar.gz"
DATA_MD5 = "265825ec94f79390e4f1e38045a69059"
# The archive holds images/ (and objects/) only; its list files live in the development kit.
LISTS_URL = "https://raw.githubusercontent.com/CSAILVision/miniplaces/master/data/"


# ---------------------------------------------------------------- verify

def _decode_problem(path):
    """None when `path` exists and decodes fully with Pillow, else what is wrong."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        open_rgb(path)
    except DECODE_ERRORS as exc:
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
    """Download `url` to `dest` with a progress bar (written as dest.part, then renamed).
    Returns the file's MD5 (hex), computed while it streams in."""
    part = dest.with_name(dest.name + ".part")
    received, md5 = 0, hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as file:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name) as bar:
                while chunk := response.read(1 << 20):
                    received += file.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, bad replies
        raise _unreachable(url, getattr(exc, "reason", exc)) from exc
    if total and received != total:
        raise _unreachable(url, f"the transfer stopped after {received} of {total} bytes")
    part.replace(dest)
    return md5.hexdigest()


def _check_md5(archive, url, expected, got):
    """DataError (after removing `archive`) unless its MD5 `got` is the `expected` one."""
    if got != expected.lower():
        archive.unlink()
        raise DataError(f"the archive from {url} has MD5 {got}, expected {expected}: it is damaged or "
                        "not the MiniPlaces release, so it was deleted and nothing was extracted. Run the "
                        "download again, or pass --md5 with the checksum of the archive you mean.")


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


def download(root, url=DATA_URL, md5=DATA_MD5, lists_url=LISTS_URL, timeout=30):
    """Fetch, check, extract and verify the MiniPlaces data set into `root`; returns `root`.

    The archive at `url` must have the MD5 `md5` (hex) before anything is extracted. Everything
    happens in a temporary folder next to `root` that only replaces it once the data verifies,
    so `root` holds a verified data set or nothing. List files the archive lacks are fetched
    from the folder URL `lists_url`. An existing verified data set is kept.
    """
    root = Path(root).resolve()
    if _existing(root):
        print(f"{root} already holds a verified MiniPlaces data set; nothing downloaded.")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.download-", dir=root.parent))
    try:
        archive = work / (Path(urllib.parse.urlparse(url).path).name or "data.tar.gz")
        _check_md5(archive, url, md5, _fetch(url, archive, timeout))
        _extract(archive, work / "extract")
        archive.unlink()
        data = _find_data_root(work / "extract")
        for name in LIST_FILES:
            if not (data / name).is_file():
                _fetch(urllib.parse.urljoin(lists_url.rstrip("/") + "/", name), data / name, timeout)
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

"""The MiniPlaces layout on disk and its list files (the lowest layer of `lib.data`, which re-exports it).

    ROOT/categories.txt    "/a/abbey 0"                    class name and id, one per line
    ROOT/train.txt         "train/a/abbey/00000001.jpg 0"  path relative to ROOT/images, label
    ROOT/val.txt           "val/00000001.jpg 71"
    ROOT/images/...        128x128 RGB JPEGs (the official archive also has images/test/, unlisted)
"""
from collections import Counter
import functools
import hashlib
from pathlib import Path

from PIL import Image


PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_ROOT = PROJECT_ROOT / "data" / "miniplaces-sample"
LIST_FILES = ("categories.txt", "train.txt", "val.txt")
SPLITS = ("train", "val")
NUM_CLASSES = 100


class DataError(Exception):
    """A user-caused data problem; the message says what is wrong and what to do."""


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
    if rel.startswith("/") or ".." in rel.split("/"):  # string tests: 100,000 lines parse in well under 1 s
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


# What Pillow raises for a file that is not a decodable image (truncated, corrupt, not an image, a bomb).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def open_rgb(path):
    """The image file at `path` as a PIL RGB image (decoded fully); DECODE_ERRORS when it does not decode."""
    with Image.open(path) as image:
        return image.convert("RGB")


def fingerprint(root):
    """What identifies the data set at `root` by its content, not its place: {'lists': the first 16 hex digits
    of the SHA-256 of categories.txt, train.txt and val.txt, 'train_images': N, 'val_images': M} (entries
    listed). A copy of the data set elsewhere has the same fingerprint; read once per version of the files."""
    files = [Path(root) / name for name in LIST_FILES]
    for path in files:
        if not path.is_file():
            raise _missing(path)
    return dict(_fingerprint(tuple(str(path) for path in files),
                             tuple((path.stat().st_size, path.stat().st_mtime_ns) for path in files)))


@functools.lru_cache(maxsize=8)
def _fingerprint(files, versions):
    """fingerprint() of the list files `files` (paths) at `versions` ((size, mtime) each), as sorted pairs."""
    digest, counts = hashlib.sha256(), {}
    for path in files:
        text = Path(path).read_bytes()
        digest.update(f"{Path(path).name} {len(text)}\n".encode() + text)
        counts[Path(path).stem] = sum(1 for line in text.splitlines() if line.strip())
    return (("lists", digest.hexdigest()[:16]), ("train_images", counts["train"]), ("val_images", counts["val"]))

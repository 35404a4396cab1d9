"""First and later loads of a split through the decoded cache (`data.load_split`), each in a fresh process.

The split's cache file is removed first, so the first load decodes every JPEG and writes the cache; each
later load is a new Python process (as a later notebook kernel or torchrun process is) that finds the
cache. For every load: seconds inside `load_split` (list file, cache key, decode or map) and seconds to
then touch every 4 KiB page of the images once (from the page cache, or the disk when they are not there).
Prints a table; writes benchmarks/cache.json.

    python -m benchmarks.cache [--data-dir DIR] [--split train] [--size 128] [--later 3] [--workers 0] [--keep]

--keep leaves an existing cache in place (no first load: every load is a later one).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lib import data


def load_once(root, split, size, workers):
    """{'load_s', 'touch_s', 'images', 'gib', 'checksum'} of one load_split call in this process."""
    start = time.perf_counter()
    split_set = data.load_split(root, split, size, num_workers=workers)
    loaded = time.perf_counter() - start
    images = split_set.tensors[0].numpy().reshape(-1)
    checksum = int(images[::4096].sum(dtype=np.int64))  # one byte of every page
    touched = time.perf_counter() - start - loaded
    return {"load_s": loaded, "touch_s": touched, "images": len(split_set), "gib": images.size / 2**30,
            "checksum": checksum}


def in_fresh_process(args):
    command = [sys.executable, "-m", "benchmarks.cache", "--once", "--data-dir", str(args.data_dir),
               "--split", args.split, "--size", str(args.size), "--workers", str(args.workers)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=data.SAMPLE_ROOT)
    parser.add_argument("--split", default="train", choices=data.SPLITS)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--later", type=int, default=3, help="later loads to time (median reported)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes for the first load")
    parser.add_argument("--keep", action="store_true", help="keep an existing cache: time later loads only")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)  # one load, JSON on stdout
    args = parser.parse_args()
    if args.once:
        print(json.dumps(load_once(args.data_dir, args.split, args.size, args.workers)))
        return
    if not args.keep:
        for old in data.cache_dir(args.data_dir).glob(f"{args.split}-{data.base_size(args.size)}px-*.npy"):
            old.unlink()
    first = None if args.keep else in_fresh_process(args)
    later = [in_fresh_process(args) for _ in range(args.later)]
    assert len({run["checksum"] for run in later + [first or later[0]]}) == 1, "loads read different pixels"
    result = {"data_dir": str(args.data_dir), "split": args.split, "size": args.size, "images": later[0]["images"],
              "gib": later[0]["gib"], "workers": args.workers, "first": first, "later": later}
    print(f"{args.data_dir} {args.split}: {later[0]['images']:,} images at {data.base_size(args.size)} px, "
          f"{later[0]['gib']:.2f} GiB uint8; later loads: median of {args.later}, each a fresh process")
    print(f"| {'load':<6} | {'load_split (s)':>14} | {'touch every page (s)':>20} |")
    print(f"|{'-' * 8}|{'-' * 16}|{'-' * 22}|")
    if first:
        print(f"| {'first':<6} | {first['load_s']:>14.2f} | {first['touch_s']:>20.2f} |")
    print(f"| {'later':<6} | {statistics.median(r['load_s'] for r in later):>14.2f} | "
          f"{statistics.median(r['touch_s'] for r in later):>20.2f} |")
    Path(__file__).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Analyses cached beside their run: computed once, keyed by the run and the settings, never overwritten.

An analysis of a finished run (per-image predictions, an attack evaluation, a step measurement) lives in
`<run dir>/analyses/<kind>-<hash>.json` (settings, plain values, provenance) and, when it holds arrays, a
`.npz` of the same name. The hash covers the kind, the settings and the run's identity (its configuration
and the time it finished), so a retrained run never reuses an old analysis, and a run retrained with
`force` is moved aside with its analyses. `force=True` recomputes an analysis, keeping the previous files
renamed beside it. One process at a time computes an analysis: another asking for it meanwhile waits (with a
line saying so) and loads the result (lib.core.locks).

The hash leaves out where the data set lies and its fingerprint (`data_dir`, `dataset`, at any depth of the
settings too): an analysis stays valid when the results are copied next to another copy of the data set (the
run directory itself holds runs of one data set; lib.study.runs). An analysis cached under a hash that still
covered them (by earlier versions) is found by its settings and renamed once.

A damaged analysis (a .json or .npz that does not read back: truncated, emptied) is named in one line, moved aside
to <name>.damaged-<time>.json/.npz and computed again, as a damaged checkpoint is (lib.study.runs).
"""
import contextlib
import hashlib
import io
import json
import platform
import sys
import time
import zipfile
import zlib

import numpy as np
import torch

from lib.core.locks import exclusive
from lib.core.progress import note
from lib.core.space import atomic_write
from lib.training.run_files import git_commit


def cached(run, kind, settings, compute, force=False):
    """compute()'s result for `run` and `settings`, from the cache when present (then compute is not called).

    run: a finished lib.study.Run; kind: a short name ("predictions", "attack", ...); settings: plain
    data that determines the result; compute: () -> a dict whose values are numpy arrays, plain data, or
    dicts of those (string keys). Returns that dict (arrays loaded back as numpy arrays).
    """
    if not run.finished:
        raise ValueError(f"the run in {run.dir.name} has not finished: train it before analysing it")
    path = _path(run, kind, settings)
    if not path.with_suffix(".json").exists():
        _adopt_earlier(path, run, kind, settings)
    result = None if force else _intact(path)
    if result is not None:
        return result
    with exclusive(path.with_suffix(".lock"), f"{kind} of {run.dir}: waiting for another process computing it"):
        result = None if force else _intact(path)  # what the process waited for computed
        return result if result is not None else _compute(run, kind, settings, compute, path, force)


def _compute(run, kind, settings, compute, path, force):
    """compute() stored at `path` (the caller holds its lock), the previous result kept aside when `force`."""
    if force:
        _keep_previous_analysis(path)
    start = time.perf_counter()
    result = compute()
    arrays, values = _split(result)
    record = {"kind": kind, "settings": settings, "values": values, "provenance": {
        "run": f"{run.config['experiment']}/{run.dir.name}",
        "run_finished_at": run.metrics["provenance"]["finished_at"],
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.perf_counter() - start,
        "torch": torch.__version__, "python": platform.python_version(), "git_commit": git_commit()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    if arrays:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write(path.with_suffix(".npz"), lambda p: p.write_bytes(buffer.getvalue()), "the analysis")
    atomic_write(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(record, indent=1, default=_plain)),
                 "the analysis")
    return load(path)


DAMAGE = (ValueError, KeyError, TypeError, EOFError, OSError, zipfile.BadZipFile, zlib.error)  # what reading raises


def _intact(path):
    """The analysis stored at `path` (without suffix), or None when it is not there or is damaged (then its files
    are moved aside, `_set_aside`)."""
    if not path.with_suffix(".json").exists():
        return None
    try:
        return load(path)
    except DAMAGE as error:
        _set_aside(path, error)
        return None


def _read_record(json_path):
    """The record of the analysis .json `json_path`, or None when it is damaged (its files then moved aside)."""
    try:
        record = json.loads(json_path.read_text())
        if not (isinstance(record, dict) and isinstance(record.get("provenance"), dict)):
            raise ValueError("not an analysis record")
        return record
    except DAMAGE as error:
        return _set_aside(json_path.with_suffix(""), error)


def _set_aside(path, error):
    """Move the files of the damaged analysis at `path` to <name>.damaged-<time>.json/.npz, saying so in one line
    (stderr and a report's terminal); returns None."""
    stamp, moved = time.strftime("%Y%m%d-%H%M%S"), []
    for suffix in (".json", ".npz"):
        with contextlib.suppress(FileNotFoundError):  # absent, or just moved by another process
            aside = path.with_name(f"{path.name}.damaged-{stamp}{suffix}")
            path.with_suffix(suffix).rename(aside)
            moved.append(aside.name)
    if moved:
        what = error if isinstance(error, str) else f"{type(error).__name__}: {str(error)[:120]}"
        line = f"damaged analysis {path} ({what}): its files moved aside as {' and '.join(moved)}; computing it again"
        print(line, file=sys.stderr, flush=True)
        note(line)


def load(path):
    """The result stored at `path` (without suffix): JSON values with the .npz arrays put back in place."""
    record = json.loads(path.with_suffix(".json").read_text())
    result = record["values"]
    npz = path.with_suffix(".npz")
    if npz.exists():
        with np.load(npz) as arrays:
            for key in arrays.files:
                *parents, leaf = key.split("/")
                node = result
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = arrays[key]
    return result


def provenance(run, kind, settings):
    """The provenance record of a cached analysis, or None when it is not cached."""
    path = _path(run, kind, settings)
    if not path.with_suffix(".json").exists():
        _adopt_earlier(path, run, kind, settings)
    record = _read_record(path.with_suffix(".json")) if path.with_suffix(".json").exists() else None
    return record["provenance"] if record else None


PLACE_KEYS = ("data_dir", "dataset")  # left out of the hash: where the data set lies, and its fingerprint


def _path(run, kind, settings):
    return run.dir / "analyses" / f"{kind}-{_digest(run, kind, settings)}"


def _digest(run, kind, settings):
    identity = {"kind": kind, "settings": settings, "config": run.config,
                "finished_at": run.metrics["provenance"]["finished_at"]}
    plain = _without_place(json.loads(json.dumps(identity, default=_plain)))
    return hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]


def _without_place(tree):
    """`tree` (plain data) without PLACE_KEYS in any dict."""
    if isinstance(tree, dict):
        return {key: _without_place(value) for key, value in tree.items() if key not in PLACE_KEYS}
    if isinstance(tree, list):
        return [_without_place(value) for value in tree]
    return tree


def _adopt_earlier(path, run, kind, settings):
    """Rename an analysis of this training of `run` cached under an earlier hash (one that covered the data set's
    place, or a config.json since brought up to date) whose kind and settings give `path`'s hash now to `path`,
    .json and .npz."""
    for old in path.parent.glob(f"{kind}-*.json"):
        if ".replaced-" in old.name or ".damaged-" in old.name:
            continue
        record = _read_record(old)
        if record is None:
            continue
        same_run = record["provenance"].get("run_finished_at") == run.metrics["provenance"]["finished_at"]
        if same_run and record["kind"] == kind and _digest(run, kind, record["settings"]) == path.name[len(kind) + 1:]:
            for suffix in (".npz", ".json"):
                with contextlib.suppress(FileNotFoundError):  # absent, or just renamed by another process
                    old.with_suffix(suffix).rename(path.with_suffix(suffix))
            return


def _split(tree, prefix=""):
    """(arrays by 'a/b' path, the rest as plain data) of a dict tree."""
    arrays, values = {}, {}
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"cached results need string keys without '/', got {key!r}")
        if isinstance(value, np.ndarray):
            arrays[prefix + key] = value
        elif isinstance(value, dict):
            sub_arrays, sub_values = _split(value, f"{prefix}{key}/")
            arrays.update(sub_arrays)
            if sub_values or not sub_arrays:
                values[key] = sub_values
        else:
            values[key] = value
    return arrays, values


def _keep_previous_analysis(path):
    """Rename an analysis's files (.json, .npz) to <name>.replaced-<time>, so a recomputation loses nothing."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in (".json", ".npz"):
        old = path.with_suffix(suffix)
        if old.exists():
            old.rename(old.with_name(f"{old.stem}.replaced-{stamp}{suffix}"))


def _plain(value):
    """JSON for numpy scalars (and tuples through lists)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a cached analysis")

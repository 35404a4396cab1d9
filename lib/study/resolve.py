"""A configuration resolved from the registry, checked, and the run directory and attacks it implies.

A configuration is plain data, resolved in this order (later wins)::

    TRAIN_DEFAULTS  <-  PROFILES[profile]  <-  experiment["train"]  <-  experiment[profile]  <-  overrides
                    <-  DRY_RUN caps (dry runs only)

(model_kwargs merge the same way: experiment, then its profile entry, then overrides.) Every setting is checked
(lib.study.settings) before anything is written.
"""
import functools
import hashlib
import json
from pathlib import Path

from lib import data
from lib.attacks.pgd import PIXEL_PER_NORMALIZED
from lib.core.errors import ConfigError, check_name
from lib.study.registry import (ATTACKS, DRY_RUN, EXPERIMENTS, PROFILES, RESULTS_DIR, STRONG_ATTACKS,
                                TRAIN_DEFAULTS)
from lib.study.settings import check_attack, check_training


def config(name, profile="sample", data_dir=None, dry_run=False, **overrides):
    """The resolved configuration (a dict of plain data) of experiment `name` under `profile`, checked.

    dry_run: cap the work by DRY_RUN (the warmup shrinks with the epochs); the config says dry_run True.
    """
    check_name("experiment", name, EXPERIMENTS)
    check_name("profile", profile, PROFILES)
    exp = EXPERIMENTS[name]
    unknown = set(overrides) - set(TRAIN_DEFAULTS) - {"model_kwargs"}
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))} of {name}; valid settings: "
                          f"{', '.join(sorted(TRAIN_DEFAULTS))}, model_kwargs")
    overrides = dict(overrides)
    per_profile = dict(exp.get(profile, {}))
    model_kwargs = {**exp.get("model_kwargs", {}), **per_profile.pop("model_kwargs", {}),
                    **overrides.pop("model_kwargs", {})}
    cfg = {**TRAIN_DEFAULTS, **PROFILES[profile], **exp.get("train", {}), **per_profile}
    cfg.update(overrides)
    check_training(cfg, name)
    source = _init_source(cfg["init_from"], name)
    if source and config(source[0], profile, **source[1])["init_from"] is not None:
        raise ConfigError(f"{name}: init_from {source[0]!r} must be a run that does not itself use init_from")
    if dry_run:
        _cap_for_dry_run(cfg, model_kwargs)
    root = Path(data_dir) if data_dir else data.SAMPLE_ROOT
    return {"experiment": name, "profile": profile, "dry_run": bool(dry_run), "title": exp["title"],
            "model": exp["model"], "model_kwargs": model_kwargs, "data_dir": str(root.resolve()), **cfg}


def _cap_for_dry_run(cfg, model_kwargs):
    """Apply DRY_RUN to a configuration in place: fewer epochs (the warmup shrinks with them), capped batches."""
    epochs = min(cfg["epochs"], DRY_RUN["epochs"])
    cfg.update(warmup_epochs=cfg["warmup_epochs"] * epochs / cfg["epochs"], epochs=epochs,
               **{key: min(cfg[key] or DRY_RUN[key], DRY_RUN[key]) for key in ("train_batches", "val_batches")})
    if model_kwargs.get("pretrained") is True:
        model_kwargs["pretrained"] = "auto"


def _init_source(init_from, experiment):
    """`experiment`'s init_from (None, an experiment, or {experiment: its overrides}) -> (name, overrides) or None."""
    if init_from is None:
        return None
    if isinstance(init_from, str):
        name, overrides = init_from, {}
    elif isinstance(init_from, dict) and len(init_from) == 1:
        [(name, overrides)] = init_from.items()
    else:
        name = overrides = None
    if name not in EXPERIMENTS or not isinstance(overrides, dict):
        raise ConfigError(f"{experiment}: init_from must be null, an experiment ({', '.join(EXPERIMENTS)}) or "
                          f"{{experiment: {{setting: value}}}}, got {init_from!r}")
    return name, overrides


def check_data(cfg):
    """Check what needs the data set: its train list exists and holds at least one batch."""
    train_list = Path(cfg["data_dir"]) / "train.txt"
    stat = train_list.stat() if train_list.is_file() else None
    available = _list_length(cfg["data_dir"], stat and (stat.st_size, stat.st_mtime_ns))
    check_training(cfg, cfg["experiment"], min(available, cfg["train_images"] or available))


@functools.lru_cache(maxsize=4)
def _list_length(root, version):
    """Entries in ROOT/train.txt (read once per file version: size and modification time)."""
    return len(data.read_list(root, "train"))


def run_dir(name, profile="sample", overrides=None, results_dir=None, dry_run=False):
    """results/runs/<name>/<profile>/, <profile>-dryrun/ for a dry run, then -<hash> when settings were overridden."""
    base = Path(results_dir or RESULTS_DIR) / "runs" / name
    folder = f"{profile}-dryrun" if dry_run else profile
    if not overrides:
        return base / folder
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return base / f"{folder}-{digest}"


def attack_settings(profile="sample", dry_run=False, **overrides):
    """The attacks of notebooks 03/04 in pixel units: ATTACKS with a notebook's `attack` overrides.

    overrides: epsilon and step_size in /255, steps (PGD iterations), images (None: the whole val set).
    step_size defaults to epsilon / steps, as in the harness's default (0.01 = 0.1 / 10 steps). Returns
    {'default': {num_steps, step_size, epsilon} for PGDAttack(**...), 'epsilons': tuple, 'grid_steps',
    'grid_scales', 'images': int or None, 'strong': {num_steps, restarts, target_classes, epsilon} for
    lib.attacks.AutoPGD(loss, **...) (STRONG_ATTACKS at the default's epsilon), 'strong_images': int or None,
    at most 'images'}; a dry run attacks at most DRY_RUN['attack_images'] images.
    """
    check_name("profile", profile, PROFILES)
    check_attack(overrides)
    harness = ATTACKS["default"]
    epsilon = overrides["epsilon"] / 255 if "epsilon" in overrides else harness["epsilon"] * PIXEL_PER_NORMALIZED
    steps = overrides.get("steps", harness["num_steps"])
    step_size = overrides["step_size"] / 255 if "step_size" in overrides else epsilon / steps
    images = overrides.get("images", ATTACKS["images"][profile])
    capped = [n for n in (STRONG_ATTACKS["images"][profile], images) if n is not None]
    strong_images = min(capped) if capped else None  # never more images than the default attack's
    if dry_run:
        images, strong_images = (min(n or DRY_RUN["attack_images"], DRY_RUN["attack_images"])
                                 for n in (images, strong_images))
    strong = dict(num_steps=STRONG_ATTACKS["steps"][profile], restarts=STRONG_ATTACKS["restarts"][profile],
                  target_classes=STRONG_ATTACKS["target_classes"], epsilon=epsilon)
    return dict(default=dict(num_steps=steps, step_size=step_size, epsilon=epsilon), epsilons=ATTACKS["epsilons"],
                grid_steps=ATTACKS["grid_steps"], grid_scales=ATTACKS["grid_scales"], images=images,
                strong=strong, strong_images=strong_images)

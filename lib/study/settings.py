"""Checking settings before any work starts, and reading them from the command line.

Every check raises ConfigError with one line that names the setting, its valid range and the value given,
so that `python -m lib` can print `error: ...` and exit 2 before a directory is created or a kernel started.
"""
import json
import math

import yaml

from lib.core.devices import AMP_CHOICES
from lib.training.loaders import DATA_ON_DEVICE


OPTIMIZERS = ("sgd", "adamw")
ATTACK_KEYS = {"epsilon": "pixels /255", "step_size": "pixels /255", "steps": "PGD iterations",
               "images": "validation images attacked"}


def _integer(value, low):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value, low, high=math.inf, high_open=False):
    """A finite int/float in [low, high] (or [low, high) when high_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return low <= value and (value < high if high_open else value <= high)


def _optional_integer(value, low):
    return value is None or _integer(value, low)


# setting -> (test(value, cfg), valid range); the range may quote other settings of cfg by {name}.
TRAINING_CHECKS = {
    "epochs": (lambda v, c: _integer(v, 1), "an integer >= 1"),
    "batch_size": (lambda v, c: _integer(v, 1), "an integer >= 1"),
    "val_batch_size": (lambda v, c: _integer(v, 1), "an integer >= 1"),
    "lr": (lambda v, c: _number(v, 0) and v > 0, "a finite number > 0"),
    "momentum": (lambda v, c: _number(v, 0, 1, high_open=True), "a number in [0, 1)"),
    "weight_decay": (lambda v, c: _number(v, 0), "a finite number >= 0"),
    "warmup_epochs": (lambda v, c: _number(v, 0, c["epochs"]), "a number from 0 to epochs ({epochs})"),
    "grad_clip": (lambda v, c: _number(v, 0), "a finite number >= 0 (0: no clipping)"),
    "label_smoothing": (lambda v, c: _number(v, 0, 1, high_open=True), "a number in [0, 1)"),
    "seed": (lambda v, c: _integer(v, 0), "an integer >= 0"),
    "optimizer": (lambda v, c: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
    "amp": (lambda v, c: v in AMP_CHOICES, "one of " + ", ".join(AMP_CHOICES) + " (quote 'off' in YAML)"),
    "channels_last": (lambda v, c: isinstance(v, bool), "true or false"),
    "image_size": (lambda v, c: _integer(v, 32), "an integer >= 32 (pixels)"),
    "train_images": (lambda v, c: _optional_integer(v, 1), "an integer >= 1, or null for all"),
    "val_images": (lambda v, c: _optional_integer(v, 1), "an integer >= 1, or null for all"),
    "train_batches": (lambda v, c: _optional_integer(v, 1), "an integer >= 1, or null for no cap"),
    "val_batches": (lambda v, c: _optional_integer(v, 1), "an integer >= 1, or null for no cap"),
    "log_every": (lambda v, c: _integer(v, 1), "an integer >= 1 (optimizer steps)"),
    "num_workers": (lambda v, c: _integer(v, 0), "an integer >= 0"),
    "data_on_device": (lambda v, c: v in DATA_ON_DEVICE, "one of " + ", ".join(DATA_ON_DEVICE) +
                       " (quote 'on' and 'off' in YAML)"),
    "compile": (lambda v, c: isinstance(v, bool) or v == "auto", "true, false or auto"),
    "tune_split": (lambda v, c: isinstance(v, bool), "true or false"),
}
from lib.core.errors import ConfigError


def check_training(cfg, experiment, train_size=None):
    """Raise ConfigError for the first setting of `experiment`'s resolved configuration outside its range.

    train_size: the number of training images, when known; the batch must not be larger.
    """
    for name, (test, valid) in TRAINING_CHECKS.items():
        if not test(cfg[name], cfg):
            raise ConfigError(f"{experiment}: {name} must be {valid.format(**cfg)}, got {cfg[name]!r}")
    if train_size is not None and cfg["batch_size"] > train_size:
        raise ConfigError(f"{experiment}: batch_size must be from 1 to the number of training images "
                          f"({train_size}), got {cfg['batch_size']}")


def check_attack(overrides):
    """Raise ConfigError for an unknown attack setting or one out of range (epsilon, step_size in /255)."""
    unknown = set(overrides) - set(ATTACK_KEYS)
    if unknown:
        valid = ", ".join(f"{key} ({unit})" for key, unit in ATTACK_KEYS.items())
        raise ConfigError(f"unknown attack setting(s) {', '.join(sorted(unknown))}; valid: {valid}")
    for key in ("epsilon", "step_size"):
        if key in overrides and not (_number(overrides[key], 0, 255) and overrides[key] > 0):
            raise ConfigError(f"attack {key} must be a number in (0, 255] (pixels /255), got {overrides[key]!r}")
    if "steps" in overrides and not _integer(overrides["steps"], 1):
        raise ConfigError(f"attack steps must be an integer >= 1, got {overrides['steps']!r}")
    if "images" in overrides and not _optional_integer(overrides["images"], 1):
        raise ConfigError(f"attack images must be an integer >= 1, or null for all, got {overrides['images']!r}")


def parse_value(text):
    """A command-line value: JSON (20, 0.02, 1e-3, true, null), a YAML mapping/list, a number, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.lstrip().startswith(("{", "[")):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"cannot read {text!r} as a mapping or list: {error}".splitlines()[0]) from error
    try:
        return float(text)
    except ValueError:
        return text


def parse_assignments(assignments):
    """`--set` items 'experiment.setting=value' / 'attack.setting=value' -> (overrides, attack).

    overrides: {experiment: {setting: value}}; attack: {setting: value}; a dotted setting nests
    (simplenet.model_kwargs.conv=custom). Names are checked later, with the configuration.
    """
    overrides, attack = {}, {}
    for item in assignments:
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or len(path) < 2 or not all(path):
            raise ConfigError(f"--set takes EXPERIMENT.SETTING=VALUE or attack.SETTING=VALUE "
                              f"(e.g. simplenet.epochs=20), got {item!r}")
        target = attack if path[0] == "attack" else overrides.setdefault(path[0], {})
        for part in path[1:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = parse_value(text.strip())
    return overrides, attack

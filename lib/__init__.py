"""MiniPlaces scene-classification study: data, models, one trainer, attacks, the study, the report.

Packages, from the bottom up (each imports only those below it): core (devices, progress lines, the
configuration error), data, models, training, attacks, study (the registry and runs), report.

The public API of earlier, flat versions stays importable: `from lib import data, conv, cnn, vit, attacks,
train, experiments` gives lib.data, lib.models.conv, lib.models.cnn, lib.models.vit, lib.attacks,
lib.training and lib.study.
"""
import importlib

ALIASES = {"conv": "lib.models.conv", "cnn": "lib.models.cnn", "vit": "lib.models.vit",
           "train": "lib.training", "experiments": "lib.study"}


def __getattr__(name):
    """Load an alias of the public API on first use (so `import lib` stays light)."""
    if name in ALIASES:
        return importlib.import_module(ALIASES[name])
    raise AttributeError(f"module 'lib' has no attribute {name!r}")

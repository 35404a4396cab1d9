"""One training loop for every experiment (lib.training.trainer), its loaders, metrics, precision choice, run
files and step costs.
"""
from lib.training.metrics import (  # noqa: F401 (the package's API)
    label_rank, correct_topk, Meter, evaluate)
from lib.training.loaders import (  # noqa: F401 (the package's API)
    build_loaders)
from lib.training.amp import AMP_MIN_SPEEDUP  # noqa: F401 (the package's API)
from lib.training.trainer import (  # noqa: F401 (the package's API)
    HISTORY_FIELDS, TrainingError, warmup_cosine, build_optimizer, Trainer)
from lib.core.devices import AMP_CHOICES  # noqa: F401 (a run's amp setting)

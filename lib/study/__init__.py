"""The study: the registry of experiments and profiles (plain data), configuration resolution, runs, and the
study's parameters.

`experiments.run(name, profile)` (this package, as the public API calls it) trains one experiment or re-uses
its cached run.
"""
from lib.study.registry import (  # noqa: F401 (the package's API)
    OUTPUT_ROOT, RESULTS_DIR, TRAIN_DEFAULTS, PROFILES, PROFILE_SCOPES, DRY_RUN, ADVERSARIAL_TRAINING,
    ATTACKS,
    SIMPLENET_SAMPLE, ADV_SAMPLE, CNN_TRAIN, VIT_TRAIN, VIT_SAMPLE, VIT_SMOKE, EXPERIMENTS, STRONG_ATTACKS,
    SEEDS, SEEDED, REPORTED)
from lib.study.resolve import (  # noqa: F401 (the package's API)
    config, check_data, run_dir, attack_settings)
from lib.study.runs import (  # noqa: F401 (the package's API)
    datasets, val_data, input_hook, Run, run)
from lib.study.parameters import (  # noqa: F401 (the package's API)
    Study, check_seeds, changed_settings, describe_settings)
from lib.core.errors import CheckpointError, ConfigError, check_name  # noqa: F401
from lib.models.build import build_model  # noqa: F401

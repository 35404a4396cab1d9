"""The study's parameters: what a notebook (papermill) or `python -m lib report --set` varies.

`Study` holds a notebook's parameters and runs experiments with them; `describe_settings` states, for the
report, every setting that differs from the registry's (lib.study.registry) and a dry run's caps.
"""
import copy
import dataclasses

from lib.core.errors import ConfigError, check_name
from lib.study import registry, resolve, runs


@dataclasses.dataclass(frozen=True)
class Study:
    """One execution's parameters (a notebook's papermill parameters); runs experiments with them.

    overrides: {experiment: {setting: value}}, the settings of `lib.study.runs.run`; each applies to its own
    experiment only: AdvSimpleNet's init_from source keeps the registry's settings unless init_from names
    them, e.g. {"advsimplenet": {"init_from": {"simplenet": {"epochs": 20}}}}.
    seeds: training seeds of each experiment behind a comparative finding (registry.SEEDED), None for the
    profile's default (registry.SEEDS): replica i trains with the configuration's seed + i, a run of its own.
    """
    profile: str = "sample"
    data_dir: str = ""
    device: str = "auto"
    force_retrain: bool = False
    dry_run: bool = False
    overrides: dict = dataclasses.field(default_factory=dict)
    seeds: int = None

    def __post_init__(self):
        check_name("profile", self.profile, registry.PROFILES)
        check_seeds(self.seeds)
        for name in self.overrides:
            self.config(name)

    @property
    def seed_count(self):
        """The number of training seeds of a seeded experiment in this study."""
        return self.seeds or registry.SEEDS[self.profile]

    def replicas(self, name):
        """The number of runs of experiment `name`: seed_count when it is in registry.SEEDED, else 1."""
        return self.seed_count if name in registry.SEEDED else 1

    def config(self, name, replica=0):
        """The resolved configuration of experiment `name` (its `replica`-th seed) in this study."""
        return resolve.config(name, self.profile, self.data_dir or None, self.dry_run,
                              **self._settings(name, replica))

    def run(self, name, replica=0, **kwargs):
        """experiments.run of `name` (its `replica`-th seed) with this study's parameters (kwargs: e.g. progress,
        results_dir)."""
        return runs.run(name, self.profile, data_dir=self.data_dir or None, device=self.device,
                        force=self.force_retrain, dry_run=self.dry_run, **kwargs, **self._settings(name, replica))

    def run_dir(self, name, replica=0, results_dir=None):
        """The run directory of experiment `name` (its `replica`-th seed) in this study (lib.study.run_dir), under
        `results_dir` (default: results/)."""
        return resolve.run_dir(name, self.profile, self._settings(name, replica), results_dir, self.dry_run)

    def runs(self, name, **kwargs):
        """[run(name, i) for every seed i of `name` in this study]: one run per seed, the first the one of `run`."""
        return [self.run(name, replica, **kwargs) for replica in range(self.replicas(name))]

    def _settings(self, name, replica=0):
        """The overrides of `name`; for replica i > 0 also seed = the configuration's seed + i, and the init_from
        source's seed moved by i too, so that seed i of AdvSimpleNet starts from seed i of its source."""
        settings = copy.deepcopy(self.overrides.get(name, {}))
        if not replica:
            return settings  # the first seed's run directory is the one of a study without seeds
        cfg = resolve.config(name, self.profile, **settings)
        settings["seed"] = cfg["seed"] + replica
        source = resolve._init_source(cfg["init_from"], name)
        if source:
            source_name, source_settings = source
            source_seed = resolve.config(source_name, self.profile, **source_settings)["seed"]
            settings["init_from"] = {source_name: {**source_settings, "seed": source_seed + replica}}
        return settings


def check_seeds(seeds):
    """Raise ConfigError unless `seeds` is None (the profile's default) or an integer >= 1."""
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"seeds must be an integer >= 1 (training seeds per compared experiment), or None for "
                          f"the profile's default, got {seeds!r}")


def _per_255(value):
    return f"{255 * value:.3g}/255"


def changed_settings(profile="sample", overrides=None, attack=None):
    """Rows {'experiment', 'setting', 'value', 'default'}, one per setting that differs from the registry's.

    Attack distances are given in /255 (text), like the `attack` parameter.
    """
    rows = []
    for name, settings in (overrides or {}).items():
        default, changed = resolve.config(name, profile), resolve.config(name, profile, **settings)
        rows += [{"experiment": name, "setting": key, "value": changed[key], "default": default[key]}
                 for key in settings if changed[key] != default[key]]
    default = resolve.attack_settings(profile)
    changed = resolve.attack_settings(profile, **(attack or {}))
    for key, value in changed["default"].items():
        if value != default["default"][key]:
            show = (lambda v: v) if key == "num_steps" else _per_255
            rows.append({"experiment": "attack", "setting": key, "value": show(value),
                         "default": show(default["default"][key])})
    if changed["images"] != default["images"]:
        rows.append({"experiment": "attack", "setting": "images", "value": changed["images"],
                     "default": default["images"]})
    return rows


def describe_settings(profile="sample", overrides=None, attack=None, dry_run=False, seeds=None):
    """Markdown: the profile, every setting that differs from the registry's, the training seeds (seeds: the
    study's parameter, None for the profile's default) and a dry run's caps."""
    rows = changed_settings(profile, overrides, attack)
    if seeds is not None and seeds != registry.SEEDS[profile]:
        rows.append({"experiment": "study", "setting": "seeds", "value": seeds, "default": registry.SEEDS[profile]})
    text = f"Settings: the **{profile}** profile of the experiment registry (`lib/study/registry.py`)"
    if rows:
        text += ", with these changes:\n\n" + "\n".join(
            f"- `{r['experiment']}`: {r['setting']} = {r['value']} (registry: {r['default']})" for r in rows)
    else:
        text += ", unchanged."
    if dry_run:
        caps = registry.DRY_RUN
        text = (f"**DRY RUN**: every training run stops after at most {caps['epochs']} epoch(s) of "
                f"{caps['train_batches']} optimizer steps, evaluations use {caps['val_batches']} batches, the "
                f"attacks {caps['attack_images']} images and cost measurements one step on {caps['measure_batch']} "
                "images. Its numbers test the pipeline; they are not results."
                f"\n\n{text}")
    return text

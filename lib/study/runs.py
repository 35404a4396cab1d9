"""Runs: `run` trains one experiment or re-uses its finished run; `Run` reads a run directory.

A run directory is identified by what it computes: its resolved configuration (lib.study.resolve) with the data
set taken by its content (`dataset`: lib.data.fingerprint), not by its place (`data_dir`, kept as provenance). A
finished run that computes the same is re-used wherever the project, the data set or the results folder now lie;
an interrupted one resumes from its checkpoint; anything else is set aside, never overwritten. One process at a
time works on a run directory: another asking for the same run waits, then re-uses what the first finished.
"""
import contextlib
import json
from pathlib import Path
import shutil
import sys
import time

import pandas as pd
import torch.distributed as dist

from lib import data
from lib.core.devices import seed_everything, world
from lib.core.locks import exclusive
from lib.core.errors import CheckpointError
from lib.core.progress import announce, note
from lib.models.build import build_model
from lib.study.registry import EXECUTION_SETTINGS, TRAIN_DEFAULTS
from lib.study.resolve import _init_source, check_data, config, run_dir
from lib.training.run_files import load_checkpoint, write_json
from lib.training.trainer import Trainer


def datasets(cfg):
    """(train_set, val_set, train_transform, val_transform) of a configuration. The images are memory
    maps of the data set's decoded cache (data.load_split): the first process to need a split decodes
    it (with cfg['num_workers'] processes), every later notebook kernel or torchrun process maps it.
    With cfg['tune_split'] (a recipe search's probe) the tune split is held out of the training images and is the
    set validated on: such a run never reads the validation images (lib.data.tune)."""
    size = cfg["image_size"]
    train_set = data.load_split(cfg["data_dir"], "train", size, limit=cfg["train_images"],
                                num_workers=cfg["num_workers"])
    if cfg["tune_split"]:
        train_set, val_set = data.split_off_tune(train_set)
        return train_set, val_set, data.TrainAugment(size), data.EvalTransform(size)
    val_set, val_transform = val_data(cfg)
    return train_set, val_set, data.TrainAugment(size), val_transform


def val_data(cfg):
    """(val_set, val_transform) of a configuration, as in `datasets`, without touching the training split
    (what evaluations and attacks of a trained run need)."""
    size = cfg["image_size"]
    val_set = data.load_split(cfg["data_dir"], "val", size, limit=cfg["val_images"], num_workers=cfg["num_workers"])
    return val_set, data.EvalTransform(size)


def input_hook(cfg):
    """The adversarial-training hook of a configuration, or None. cfg['adversarial']: the crafting PGD's
    num_steps, step_size and epsilon (pixel units) and optionally ramp_epochs, its epsilon warm-up."""
    if not cfg["adversarial"]:
        return None
    from lib.attacks.adversarial_training import AdversarialTraining
    from lib.attacks.pgd import PGDAttack
    settings = dict(cfg["adversarial"])
    ramp = settings.pop("ramp_epochs", 0)
    return AdversarialTraining(PGDAttack(targeted=None, **settings), ramp_epochs=ramp)


class Run:
    """A run directory: its config, per-epoch history, step log, final metrics and weights."""

    def __init__(self, path):
        self.dir = Path(path)
        self.config = json.loads((self.dir / "config.json").read_text())

    @property
    def finished(self):
        return (self.dir / "metrics.json").exists()

    @property
    def metrics(self):
        return json.loads((self.dir / "metrics.json").read_text())

    @property
    def history(self):
        return pd.read_csv(self.dir / "history.csv")

    @property
    def steps(self):
        return pd.read_csv(self.dir / "steps.csv")

    def load_model(self, best=False, device="cpu"):
        """The trained model in eval mode on `device`: last epoch's weights, or the best val Acc@1's.

        The checkpoint is read into CPU memory; only the model moves to `device`.
        """
        model = build_model(self.config, pretrained=False)
        try:
            state = load_checkpoint(self.dir / ("model_best.pth" if best else "checkpoint.pth"))
        except CheckpointError as error:
            raise CheckpointError(f"{error}: the run's weights are damaged; train it again with force=True "
                                  "(--force, or force_retrain), which keeps this run renamed beside it") from None
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    def __repr__(self):
        return f"Run({str(self.dir)!r}, finished={self.finished})"


def _keep_previous_run(path, why):
    """Rename an existing run directory so that nothing finished is overwritten."""
    if path.exists():
        aside = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(path, aside)
        print(f"kept the previous run of {path} as {aside}")


def run(name, profile="sample", *, data_dir=None, device="auto", force=False, progress=True,
        results_dir=None, stop_after=None, dry_run=False, **overrides):
    """Train experiment `name` under `profile`, or re-use its finished run with the same configuration.

    An interrupted run with the same configuration resumes from its last checkpoint. `force=True`
    retrains (the previous run is kept, renamed). `stop_after=k` stops after epoch k (for tests).
    Overrides are settings of TRAIN_DEFAULTS (e.g. epochs=5) or model_kwargs={...}; init_from names
    the source run's experiment, with the registry's settings, or {experiment: {setting: value}}.
    `dry_run=True` caps the work (DRY_RUN) in a run directory of its own. Returns a Run.
    """
    cfg = config(name, profile, data_dir, dry_run, **overrides)
    check_data(cfg)
    cfg["dataset"] = data.fingerprint(cfg["data_dir"])
    path = run_dir(name, profile, overrides, results_dir, dry_run)
    rank, _ = world()
    with _one_process(path, rank):
        if rank == 0:
            _prepare(path, cfg, force)
        if dist.is_initialized():
            dist.barrier()
        if (path / "metrics.json").exists():
            announce("cached", name, path, cfg)
            return Run(path)
        return _train(name, cfg, path, device, progress, stop_after,
                      dict(profile=profile, data_dir=data_dir, results_dir=results_dir, dry_run=dry_run))


def _one_process(path, rank):
    """The lock of run directory `path` (results/runs/.locks/<experiment>.<folder>.lock), taken by rank 0 of
    torchrun (the other ranks wait for it at a barrier); a do-nothing context on the other ranks."""
    if rank != 0:
        return contextlib.nullcontext()
    lock = path.parents[1] / ".locks" / f"{path.parent.name}.{path.name}.lock"
    return exclusive(lock, f"waiting for another process working on {path}")


def _train(name, cfg, path, device, progress, stop_after, source_args):
    """Train `name` into `path` from scratch or from its checkpoint; source_args: how run() was asked, for the
    run that init_from names. Returns the Run."""
    seed_everything(cfg["seed"])
    model = build_model(cfg)
    notes = {"pretrained_source": model.pretrained_source} if hasattr(model, "pretrained_source") else {}
    if cfg["init_from"]:
        source_name, source_overrides = _init_source(cfg["init_from"], name)
        source = run(source_name, device=device, progress=progress, **source_args, **source_overrides)
        model.load_state_dict(source.load_model().state_dict())
        notes["initialised_from"] = str(source.dir)
    announce("train", name, path, cfg)
    trainer = Trainer(model, *datasets(cfg), cfg, path, device=device,
                      input_hook=input_hook(cfg), progress=progress, notes=notes)
    if (path / "checkpoint.pth").exists() and not _resumed(trainer, path):
        return _train(name, cfg, path, device, progress, stop_after, source_args)  # from scratch
    announce("fit", name, path, cfg)
    trainer.fit(stop_after)
    if dist.is_initialized():
        dist.barrier()
    announce("finished", name, path, cfg)
    return Run(path)


def _resumed(trainer, path):
    """Resume `trainer` from path/checkpoint.pth: True; or, when it cannot be read or does not fit this run,
    False with what that attempt left (checkpoint, history, steps, best weights, TensorBoard logs) moved into
    path/damaged-<time>/ and one line saying so, so that the run restarts from scratch."""
    try:
        trainer.resume(path / "checkpoint.pth")
        return True
    except CheckpointError as error:
        failure = error
    if world()[0] == 0:
        aside = path / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for name in ("checkpoint.pth", "model_best.pth", "history.csv", "steps.csv", "tb"):
            if (path / name).exists():
                shutil.move(path / name, aside / name)
        line = (f"cannot resume: {failure}. It is kept in {aside} with the rest of that attempt; the run "
                "restarts from scratch (delete that folder once it is not needed)")
        print(line, file=sys.stderr, flush=True)
        note(line)
    if dist.is_initialized():
        dist.barrier()
    return False


def _prepare(path, cfg, force):
    """Make `path` hold this configuration: keep a run that computes the same (its config.json updated to where
    the data set now lies), set aside anything else."""
    config_file = path / "config.json"
    wanted = json.loads(json.dumps(cfg))  # as config.json holds it: tuples become lists
    stored = json.loads(config_file.read_text()) if config_file.exists() else None
    same = stored is not None and _same_computation(stored, wanted, path)
    if same and not force:
        if stored != wanted:
            write_json(config_file, wanted)
        return
    _keep_previous_run(path, "forced" if same else "replaced")
    path.mkdir(parents=True, exist_ok=True)
    write_json(config_file, wanted)


def finished_run(path, cfg):
    """Whether `path` holds a finished run that computes what configuration `cfg` (lib.study.config) does:
    one that `run` re-uses."""
    config_file = Path(path) / "config.json"
    if not ((Path(path) / "metrics.json").exists() and config_file.exists()):
        return False
    wanted = json.loads(json.dumps({**cfg, "dataset": data.fingerprint(cfg["data_dir"])}))
    return _same_computation(json.loads(config_file.read_text()), wanted, path)


def _computation(cfg):
    """The settings of a configuration that decide what its run computes: every one but the data set's place and
    fingerprint (compared apart) and EXECUTION_SETTINGS; settings it does not record at their defaults."""
    settings = {**json.loads(json.dumps(TRAIN_DEFAULTS)), **cfg}
    return {key: value for key, value in settings.items() if key not in ("data_dir", "dataset", *EXECUTION_SETTINGS)}


def _same_computation(stored, wanted, path):
    """Whether the configuration `stored` in run directory `path` computes what `wanted` does: every setting
    and the data set's fingerprint equal, wherever the data set lies. A config.json written before runs
    recorded the fingerprint is compared by its settings, and by the fingerprint of the data set at its old
    place when that place still holds one (else it is taken to be this data set, and a line says so)."""
    if _computation(stored) != _computation(wanted):
        return False
    if "dataset" in stored:
        return stored["dataset"] == wanted["dataset"]
    try:
        return data.fingerprint(stored["data_dir"]) == wanted["dataset"]
    except data.DataError:
        print(f"{path} predates data set fingerprints and its data set ({stored['data_dir']}) is not there: it is "
              f"taken to be the one at {wanted['data_dir']}, as every setting matches", file=sys.stderr)
        return True

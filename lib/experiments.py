"""The one registry of named experiments and profiles, and `run`, which trains one or re-uses its cache.

A configuration is plain data, resolved in this order (later wins)::

    TRAIN_DEFAULTS  <-  PROFILES[profile]  <-  experiment["train"]  <-  experiment[profile]  <-  overrides
                    <-  DRY_RUN caps (dry runs only)

(model_kwargs merge the same way: experiment, then its profile entry, then overrides.) Every setting is checked
(lib.settings) before anything is written.

Profiles change sizes and epochs, never code paths: `smoke` (seconds, for tests), `sample` (the embedded
sample on a CPU, the default) and `full` (the real data set on a GPU with the reference settings).
"""
import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from lib import data
from lib.attacks import PIXEL_PER_NORMALIZED
from lib.devices import seed_everything, world
from lib.progress import announce
from lib.runfiles import load_checkpoint
from lib.settings import ConfigError, check_attack, check_training
from lib.train import Trainer

# Generated files go under results/ and figures/ of the project, or of $MINIPLACES_OUTPUT when set.
OUTPUT_ROOT = Path(os.environ.get("MINIPLACES_OUTPUT", data.PROJECT_ROOT))
RESULTS_DIR = OUTPUT_ROOT / "results"

# The original harness (REFERENCE.md): SGD momentum 0.9, lr 0.1, wd 1e-4, 5 warmup epochs, cosine to 0.
TRAIN_DEFAULTS = dict(
    epochs=60, batch_size=256, val_batch_size=100, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    warmup_epochs=5, grad_clip=0.0, label_smoothing=0.0, seed=0, amp="auto", channels_last=False,
    image_size=128, train_images=None, val_images=None, log_every=20, num_workers=0, adversarial=None,
    init_from=None, train_batches=None, val_batches=None,
)

PROFILES = {
    "smoke": dict(image_size=32, epochs=2, batch_size=16, val_batch_size=32, train_images=96, val_images=48,
                  warmup_epochs=0.5, log_every=1),
    "sample": dict(image_size=64, epochs=8, batch_size=64, val_batch_size=100, warmup_epochs=1, log_every=10),
    "full": dict(num_workers=8),
}

# A dry run executes the whole study with a profile's data, sizes and models but caps the work: at most `epochs`
# epochs of at most `train_batches` optimizer steps, evaluations over `val_batches` batches, attacks on
# `attack_images` images, and cost measurements (lib.measurements) timing one step on `measure_batch` images.
# Its runs live in <profile>-dryrun directories, never re-used as real results.
# Pretrained weights are used when available, else the run starts from scratch and says so (pretrained_source),
# so that a dry run also runs offline.
DRY_RUN = dict(epochs=1, train_batches=2, val_batches=2, attack_images=8, measure_batch=4)

# PGD used to craft training samples for AdvSimpleNet (pixel units).
ADVERSARIAL_TRAINING = dict(num_steps=4, step_size=2 / 255, epsilon=8 / 255)

# The attacks of notebooks 03 and 04 (`attack_settings` resolves them to pixel units, with a notebook's
# overrides). default: the original harness's PGD-10, step 0.01, epsilon 0.1 in normalised units; epsilons: the
# robustness curve's, pixel units, each a PGD-10 of step epsilon / 10 like the default; grid_steps x grid_scales:
# PGD with the default's step size, that many steps, epsilon = scale x the default's. images: val images attacked
# per profile (an evenly spaced subset, the same for every model; None: all of them).
ATTACKS = dict(
    default=dict(num_steps=10, step_size=0.01, epsilon=0.1),
    epsilons=(1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    grid_steps=(5, 10, 20), grid_scales=(0.25, 0.5, 1, 2),
    images=dict(smoke=16, sample=None, full=None),
)

# SimpleNet has no BatchNorm: at lr 0.1 it stays near chance for the sample's first epochs, 0.05 learns at once.
SIMPLENET_SAMPLE = dict(epochs=8, lr=0.05)
# From scratch, PGD training stays at chance for far longer than the sample's budget (about 75 s per epoch on
# 2 CPU cores); on the sample AdvSimpleNet is therefore fine-tuned adversarially from SimpleNet's weights.
ADV_SAMPLE = dict(epochs=3, lr=0.02, warmup_epochs=0, init_from="simplenet")

# CNNs train in channels_last memory format, the layout oneDNN and cuDNN convolutions prefer (measured on a 2-core
# AVX2 CPU: a training step of SimpleNet 1.5x, ImprovedNet 1.3x, ResNet-18 1.2x faster at 64 px, batch 64).
CNN_TRAIN = dict(channels_last=True)
VIT_TRAIN = dict(optimizer="adamw", lr=0.01, weight_decay=0.05, grad_clip=1.0)
# Smaller inputs keep the reference's 8x8 token grid (four 4x4 windows) through a smaller patch; the sample
# also narrows the tokens (192 -> 64) so that both ViTs train within the CPU report's time budget.
VIT_SAMPLE = dict(epochs=6, model_kwargs=dict(patch_size=8, embed_dim=64))  # 64 px / patch 8
VIT_SMOKE = dict(model_kwargs=dict(patch_size=4, embed_dim=64))  # 32 px / patch 4

EXPERIMENTS = {
    "simplenet": dict(
        title="SimpleNet (nn.Conv2d)", model="simplenet", model_kwargs=dict(conv="native"), train=CNN_TRAIN,
        full=dict(epochs=60), sample=SIMPLENET_SAMPLE),
    "simplenet_custom": dict(
        title="SimpleNet (custom conv)", model="simplenet", model_kwargs=dict(conv="custom"), train=CNN_TRAIN,
        full=dict(epochs=10), sample=dict(SIMPLENET_SAMPLE, epochs=3)),
    # REFERENCE.md: the improved CNN's curve peaks near lr 0.1 while its table lists lr 0.01 / wd 0.05;
    # `improvednet` follows the curve, `improvednet_table` the table.
    "improvednet": dict(
        title="ImprovedNet", model="improvednet", model_kwargs=dict(conv="native"), train=CNN_TRAIN,
        full=dict(epochs=60), sample=dict(epochs=5)),
    "improvednet_table": dict(
        title="ImprovedNet (lr 0.01, wd 0.05)", model="improvednet", model_kwargs=dict(conv="native"),
        train=dict(CNN_TRAIN, lr=0.01, weight_decay=0.05), full=dict(epochs=60)),
    "resnet18": dict(
        title="ResNet-18", model="resnet18", model_kwargs=dict(pretrained="auto"), train=CNN_TRAIN,
        full=dict(epochs=60, model_kwargs=dict(pretrained=True)), sample=dict(epochs=3)),
    "vit": dict(
        title="ViT (window attention)", model="vit", train=VIT_TRAIN, full=dict(epochs=90), sample=VIT_SAMPLE,
        smoke=VIT_SMOKE),
    "vit_global": dict(
        title="ViT (global attention)", model="vit", model_kwargs=dict(window_block_indexes=()),
        train=VIT_TRAIN, full=dict(epochs=90), sample=VIT_SAMPLE, smoke=VIT_SMOKE),
    "advsimplenet": dict(
        title="AdvSimpleNet (PGD training)", model="simplenet", model_kwargs=dict(conv="native"),
        train=dict(CNN_TRAIN, adversarial=ADVERSARIAL_TRAINING), full=dict(epochs=70), sample=ADV_SAMPLE),
}


# ----------------------------------------------------------------------------- configuration

def check_name(kind, name, valid):
    if name not in valid:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


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


# ----------------------------------------------------------------------------- study parameters

def attack_settings(profile="sample", dry_run=False, **overrides):
    """The attacks of notebooks 03/04 in pixel units: ATTACKS with a notebook's `attack` overrides.

    overrides: epsilon and step_size in /255, steps (PGD iterations), images (None: the whole val set).
    step_size defaults to epsilon / steps, as in the harness's default (0.01 = 0.1 / 10 steps). Returns
    {'default': {num_steps, step_size, epsilon} for PGDAttack(**...), 'epsilons': tuple, 'grid_steps',
    'grid_scales', 'images': int or None}; a dry run attacks at most DRY_RUN['attack_images'] images.
    """
    check_name("profile", profile, PROFILES)
    check_attack(overrides)
    harness = ATTACKS["default"]
    epsilon = overrides["epsilon"] / 255 if "epsilon" in overrides else harness["epsilon"] * PIXEL_PER_NORMALIZED
    steps = overrides.get("steps", harness["num_steps"])
    step_size = overrides["step_size"] / 255 if "step_size" in overrides else epsilon / steps
    images = overrides.get("images", ATTACKS["images"][profile])
    if dry_run:
        images = min(images or DRY_RUN["attack_images"], DRY_RUN["attack_images"])
    return dict(default=dict(num_steps=steps, step_size=step_size, epsilon=epsilon), epsilons=ATTACKS["epsilons"],
                grid_steps=ATTACKS["grid_steps"], grid_scales=ATTACKS["grid_scales"], images=images)


# ----------------------------------------------------------------------------- models and data

def build_model(cfg, pretrained=True):
    """The model of a configuration, freshly initialised (pretrained weights per model_kwargs; with
    pretrained=False never: only the layers, to load a run's trained weights into or to count them), its weights
    in channels_last memory format when cfg['channels_last'] (so that every use of it, training, evaluation,
    attacks and cost measurements, runs the layout it was trained in)."""
    layout = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    return _new_model(cfg, pretrained).to(memory_format=layout)


def _new_model(cfg, pretrained):
    from lib import cnn, conv, vit
    kwargs = dict(cfg["model_kwargs"])
    if cfg["model"] == "resnet18" and not pretrained:
        kwargs["pretrained"] = False
    if cfg["model"] in ("simplenet", "improvednet"):
        ops = {"native": nn.Conv2d, "custom": conv.CustomConv2d}
        op = kwargs.pop("conv", "native")
        check_name("conv", op, ops)
        builder = cnn.SimpleNet if cfg["model"] == "simplenet" else cnn.ImprovedNet
        return builder(conv_op=ops[op], **kwargs)
    if cfg["model"] == "resnet18":
        return cnn.resnet18(**kwargs)
    if cfg["model"] == "vit":
        return vit.SimpleViT(img_size=cfg["image_size"], **kwargs)
    raise ConfigError(f"unknown model {cfg['model']!r}; valid models: simplenet, improvednet, resnet18, vit")


def datasets(cfg):
    """(train_set, val_set, train_transform, val_transform) of a configuration. The images are memory
    maps of the data set's decoded cache (data.load_split): the first process to need a split decodes
    it (with cfg['num_workers'] processes), every later notebook kernel or torchrun process maps it."""
    size = cfg["image_size"]
    train_set = data.load_split(cfg["data_dir"], "train", size, limit=cfg["train_images"],
                                num_workers=cfg["num_workers"])
    val_set, val_transform = val_data(cfg)
    return train_set, val_set, data.TrainAugment(size), val_transform


def val_data(cfg):
    """(val_set, val_transform) of a configuration, as in `datasets`, without touching the training split
    (what evaluations and attacks of a trained run need)."""
    size = cfg["image_size"]
    val_set = data.load_split(cfg["data_dir"], "val", size, limit=cfg["val_images"], num_workers=cfg["num_workers"])
    return val_set, data.EvalTransform(size)


def input_hook(cfg):
    """The adversarial-training hook of a configuration, or None."""
    if not cfg["adversarial"]:
        return None
    from lib.attacks import AdversarialTraining, PGDAttack
    return AdversarialTraining(PGDAttack(targeted=None, **cfg["adversarial"]))


# ----------------------------------------------------------------------------- runs

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
        state = load_checkpoint(self.dir / ("model_best.pth" if best else "checkpoint.pth"))
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    def __repr__(self):
        return f"Run({str(self.dir)!r}, finished={self.finished})"


def _set_aside(path, why):
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
    path = run_dir(name, profile, overrides, results_dir, dry_run)
    rank, _ = world()
    if rank == 0:
        _prepare(path, cfg, force)
    if dist.is_initialized():
        dist.barrier()
    if (path / "metrics.json").exists():
        announce("cached", name, path, cfg)
        return Run(path)
    seed_everything(cfg["seed"])
    model = build_model(cfg)
    notes = {"pretrained_source": model.pretrained_source} if hasattr(model, "pretrained_source") else {}
    if cfg["init_from"]:
        source_name, source_overrides = _init_source(cfg["init_from"], name)
        source = run(source_name, profile, data_dir=data_dir, device=device, progress=progress,
                     results_dir=results_dir, dry_run=dry_run, **source_overrides)
        model.load_state_dict(source.load_model().state_dict())
        notes["initialised_from"] = str(source.dir)
    announce("train", name, path, cfg)
    trainer = Trainer(model, *datasets(cfg), cfg, path, device=device,
                      input_hook=input_hook(cfg), progress=progress, notes=notes)
    if (path / "checkpoint.pth").exists():
        trainer.resume(path / "checkpoint.pth")
    announce("fit", name, path, cfg)
    trainer.fit(stop_after)
    if dist.is_initialized():
        dist.barrier()
    announce("finished", name, path, cfg)
    return Run(path)


def _prepare(path, cfg, force):
    """Make `path` hold this configuration: keep a finished match, set aside anything else."""
    config_file = path / "config.json"
    stored = json.loads(json.dumps(cfg))  # as config.json holds it: tuples become lists
    same = config_file.exists() and json.loads(config_file.read_text()) == stored
    if same and not force:
        return
    _set_aside(path, "forced" if same else "replaced")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

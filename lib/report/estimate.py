"""The whole report's expected time, said before it starts: the work of every run still to train and of the
attacks and cost measurements the notebooks make, times a training step of each model measured on this machine.

Work is counted in *image steps*: one image through one training step (forward, backward, optimizer update).
A forward pass without gradients (validation, predictions) counts EVAL_STEP of one; one PGD iteration on one
image (a forward and a backward pass) counts one, at the attack's precision (lib.report.analysis.PRECISION).
A finished run with the same configuration costs nothing: it and its cached analyses are re-used. Not counted:
decoding a data set into its cache the first time (lib.data.decoded announces it), starting kernels, exports.
"""
import json
import statistics
import time
from typing import NamedTuple

import torch

from lib import study
from lib.core import devices
from lib.core.progress import duration
from lib.data.layout import fingerprint
from lib.report.analysis import CURVE_IMAGES, PRECISION as ATTACK_PRECISION
from lib.report.measurements import REPEATS, ROUNDS
from lib.study import runs
from lib.training import step_costs
from lib.training.amp import AMP_MIN_SPEEDUP
from lib.training.trainer import build_optimizer, passes_per_step


EVAL_STEP = 1 / 3  # a forward pass costs about a third of forward + backward (the backward pass about twice it)
TIMED_STEPS = 3  # per model and precision: their median (one step's time varies by 10-30% on a 2-core VM)
# The notebooks' attacks (03 and 04): the default attack, the strong attacks (APGD-CE and APGD-T) and the
# robustness curve of each attacked experiment, and the steps-by-epsilon grid of SimpleNet's (lib.report.analysis
# on lib.study.attack_settings). PER_SEED: those that evaluate every seed's run, the others the first seed's.
ATTACKED = {"simplenet": ("default", "strong", "curve", "grid"), "advsimplenet": ("default", "strong", "curve")}
PER_SEED = ("default", "strong")
# The cost measurements (lib.report.measurements): models timed side by side, each for ROUNDS rounds of a
# warm-up, REPEATS timed steps and one memory-recording step at its run's batch size; (notebook, experiment).
MEASURED = (("01", "simplenet"), ("01", "simplenet_custom"), ("02", "vit"), ("02", "vit_global"), ("02", "simplenet"),
            ("02", "vit"))
# The notebook (its number) that trains each run: the first that asks for it, in the report's order; and the one
# that attacks it.
TRAINED_IN = {"simplenet": "01", "simplenet_custom": "01", "improvednet": "01", "resnet18": "01", "vit": "02",
              "vit_global": "02", "advsimplenet": "04"}
ATTACKED_IN = {"simplenet": "03", "advsimplenet": "04"}
# The share of validation images each attacked experiment classifies correctly (its clean top-1), which APGD attacks:
# the sample's and cpu-full's from their renders on a 2-core CPU (docs/benchmarks.md, docs/cpu-full.md), the full
# profile's SimpleNet the reference's; 1 (every image, an upper bound) where nothing was measured.
CORRECT_SHARE = {"sample": {"simplenet": 0.08, "advsimplenet": 0.03},
                 "cpu-full": {"simplenet": 0.20, "advsimplenet": 0.10}, "full": {"simplenet": 0.44}}


class Work(NamedTuple):
    """A piece of the report's work: `steps` image steps of the model `key` in `precision`, done in `notebook`."""
    notebook: str
    key: str
    precision: str
    steps: float


def training_steps(cfg, train_size, val_size):
    """Image steps of a training run of configuration `cfg` on `train_size` training and `val_size` validation
    images: per epoch, its optimizer steps x batch x (1 + the PGD iterations that craft each adversarial batch)
    and one evaluation of the validation images (train_batches / val_batches cap them, as in the trainer)."""
    steps = train_size // cfg["batch_size"]
    steps = min(steps, cfg["train_batches"] or steps)
    return cfg["epochs"] * (steps * cfg["batch_size"] * passes_per_step(cfg) + _evaluated(cfg, val_size) * EVAL_STEP)


def attack_steps(parts, attack, val_size, correct=1.0):
    """Image steps of the attacks `parts` ('default', 'strong', 'curve', 'grid') on one model; attack: the
    resolved attack settings (lib.study.attack_settings); val_size: the validation images the run's predictions
    cover. Each attack also classifies its images once clean and once attacked. APGD attacks only the images
    the model classifies correctly (`correct`: their expected share): 'strong' counts that share of the images
    for APGD-CE and for each target class (an upper bound: a target attacks only the images earlier ones missed)."""
    images = min(attack["images"] or val_size, val_size)
    curve_images = min(images, CURVE_IMAGES)
    strong = attack["strong"]
    iterations = {"default": (images, [attack["default"]["num_steps"]]),
                  "strong": (correct * min(attack["strong_images"] or val_size, val_size),
                             [strong["num_steps"] * strong["restarts"]] * (1 + strong["target_classes"])),
                  "curve": (curve_images, [attack["default"]["num_steps"]] * len(attack["epsilons"])),
                  "grid": (curve_images, [max(attack["grid_steps"])] * len(attack["grid_scales"]))}
    return sum(count * sum(n + 2 * EVAL_STEP for n in per_attack)
               for count, per_attack in (iterations[part] for part in parts))


def measurement_steps(cfg):
    """Training steps (batches) one side-by-side cost measurement of `cfg`'s model times (MEASURED), at most
    the dry run's effort in a dry run."""
    rounds, repeats = (1, 1) if cfg["dry_run"] else (ROUNDS, REPEATS)
    return rounds * (repeats + 2)


def _evaluated(cfg, val_size):
    """Validation images one evaluation of `cfg` covers (val_images and val_batches cap them)."""
    images = min(val_size, cfg["val_images"] or val_size)
    return min(images, (cfg["val_batches"] or images) * cfg["val_batch_size"])


def notebook_seconds(plan, seconds_per_image):
    """Seconds of a plan per notebook, {notebook: s} in notebook order: plan [Work]; seconds_per_image
    {(key, precision): s}."""
    seconds = {}
    for work in sorted(plan):
        seconds[work.notebook] = seconds.get(work.notebook, 0) + work.steps * seconds_per_image[(work.key,
                                                                                                 work.precision)]
    return seconds


def training_precision(cfg, device):
    """The precision a run of `cfg` trains in on `device`: bf16 for amp='bf16' or 'auto' on a GPU with bf16
    units; 'auto' for amp='auto' on a CPU with bf16 instructions, where the trainer picks bf16 only when it is at
    least AMP_MIN_SPEEDUP times faster (lib.training.amp; `measure` times both and picks alike); else fp32."""
    if not devices.has_native_bf16(device) or cfg["amp"] not in ("bf16", "auto"):
        return "fp32"
    return "auto" if cfg["amp"] == "auto" and device.type == "cpu" else "bf16"


def model_key(cfg):
    """What a step's time depends on: the model, its arguments, the image size and the memory layout."""
    return json.dumps([cfg["model"], cfg["model_kwargs"], cfg["image_size"], cfg["channels_last"]], sort_keys=True)


def plan(parameters, device, attack=None):
    """(the report's work [Work], the configurations it needs {key: cfg}, the
    runs to train [(experiment, seed replica)]): every run (each seed of a seeded experiment, Study.replicas)
    that has not finished yet (all with force_retrain), the notebooks' attacks on them, and the cost
    measurements when one of their runs is still to train.
    parameters: a lib.study.Study; device: a torch.device; attack: a notebook's attack overrides."""
    configs = {(name, replica): parameters.config(name, replica)
               for name in study.REPORTED for replica in range(parameters.replicas(name))}
    to_train = {(name, replica) for (name, replica), cfg in configs.items() if parameters.force_retrain
                or not runs.finished_run(parameters.run_dir(name, replica), cfg)}
    attack = study.attack_settings(parameters.profile, parameters.dry_run, **(attack or {}))
    listed = fingerprint(next(iter(configs.values()))["data_dir"])  # one data set for the whole study
    lists = listed["train_images"], listed["val_images"]
    work, needed = [], {}
    for name, replica in to_train:
        cfg = configs[(name, replica)]
        train_size, val_size = _sizes(cfg, lists)
        needed[model_key(cfg)] = cfg
        # training, then the predictions every notebook reads (in fp32, counted at the training step's cost)
        work.append(Work(TRAINED_IN[name], model_key(cfg), training_precision(cfg, device),
                         training_steps(cfg, train_size, val_size) + _evaluated(cfg, val_size) * EVAL_STEP))
        parts = [part for part in ATTACKED.get(name, ()) if replica == 0 or part in PER_SEED]
        if parts:
            correct = CORRECT_SHARE.get(parameters.profile, {}).get(name, 1.0)
            work.append(Work(ATTACKED_IN[name], model_key(cfg), ATTACK_PRECISION,
                             attack_steps(parts, attack, _evaluated(cfg, val_size), correct)))
    measured = {name for _, name in MEASURED}
    for notebook, name in MEASURED if {name for name, _ in to_train} & measured else ():
        cfg = configs[(name, 0)]
        batch = min(cfg["batch_size"], study.DRY_RUN["measure_batch"]) if cfg["dry_run"] else cfg["batch_size"]
        needed[model_key(cfg)] = cfg
        work.append(Work(notebook, model_key(cfg), training_precision(cfg, device), measurement_steps(cfg) * batch))
    return work, needed, sorted(to_train)


def _sizes(cfg, lists):
    """(training images, validation images) a run of `cfg` uses: lists (entries of train.txt, of val.txt)
    capped by train_images / val_images."""
    train, val = lists
    return min(train, cfg["train_images"] or train), min(val, cfg["val_images"] or val)


def measure(needed, work, device):
    """{(model key, precision): seconds per image} of a training step of each model in `needed` ({key: cfg}) in
    each precision `work` uses it in ('auto': see training_precision), on a seeded random batch of its run's batch
    size with its training optimizer (not a smaller one: on a 2-core CPU an image costs 10-30% more at batch 256
    than at 64, docs/benchmarks.md): the median wall time of TIMED_STEPS steps, each after a warm-up step. Wall
    time is what the report's runs take (a CPU's threads wait in a step's serial parts); other work on the
    machine inflates it as it inflates the report."""
    seconds = {}
    for key, precision in sorted({(item.key, item.precision) for item in work}):
        if precision == "auto":  # both timed, as the trainer's amp='auto' on a CPU does, the one it would pick kept
            fp32, bf16 = (measure(needed, [Work("", key, p, 1)], device)[(key, p)] for p in ("fp32", "bf16"))
            seconds[(key, precision)] = bf16 if fp32 / bf16 >= AMP_MIN_SPEEDUP else fp32
            continue
        cfg = needed[key]
        batch = cfg["batch_size"]
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(batch, 3, cfg["image_size"], cfg["image_size"], generator=generator).to(device)
        labels = torch.randint(0, 100, (batch,), generator=generator).to(device)
        if cfg["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        model = study.build_model(cfg, pretrained=False).to(device)
        optimizer = build_optimizer(model, cfg)
        steps = [step_costs.time_training_step(model, images, labels, optimizer, precision)
                 for _ in range(TIMED_STEPS)]
        seconds[(key, precision)] = statistics.median(steps) / batch
    return seconds


def estimate(parameters, attack=None):
    """The expected time of a report with the parameters of a lib.study.Study (its device, force_retrain,
    profile, overrides) and a notebook's `attack` overrides: {'seconds', 'notebooks': {notebook number: seconds},
    'runs': experiments still to train, 'device': the device's name, 'measured': seconds the measuring took}."""
    began = time.perf_counter()
    dev = devices.resolve_device(parameters.device)
    work, needed, trained = plan(parameters, dev, attack)
    notebooks = notebook_seconds(work, measure(needed, work, dev))
    return {"seconds": sum(notebooks.values()), "notebooks": notebooks, "runs": len(trained),
            "device": devices.device_name(dev), "measured": time.perf_counter() - began}


def describe(result):
    """The line the terminal shows before the report starts, from an `estimate` result."""
    span = "under a second" if result["seconds"] < 1 else f"about {duration(result['seconds'])}"
    if not result["runs"]:
        return f"Estimated time of this report: {span} on {result['device']} (every run is finished and re-used)"
    parts = ", ".join(f"{notebook}: {duration(seconds)}" for notebook, seconds in result["notebooks"].items())
    return (f"Estimated time of this report: {span} on {result['device']} ({parts}; "
            f"{result['runs']} run{'s' if result['runs'] > 1 else ''} to train; from training steps of each model "
            f"timed just now, in {duration(result['measured'])}, with what else runs on the machine now; a first "
            "decode of the data set adds to it)")

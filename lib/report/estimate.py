"""The whole report's expected time, said before it starts: the work of every run still to train and of the
attacks and cost measurements the notebooks make, times a training step of each model measured on this machine.

Work is counted in *image steps*: one image through one training step (forward, backward, optimizer update).
A forward pass without gradients (validation, predictions) counts EVAL_STEP of one; one PGD iteration on one
image (a forward and a backward pass) counts one, at the attack's precision (lib.report.analysis.PRECISION).
A finished run with the same configuration costs nothing: it and its cached analyses are re-used. Not counted:
decoding a data set into its cache the first time (lib.data.decoded announces it), starting kernels, exports.
"""
import json
import time

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
from lib.training.trainer import build_optimizer


EVAL_STEP = 1 / 3  # a forward pass costs about a third of forward + backward (the backward pass about twice it)
CPU_MEASURE_BATCH = 64  # a CPU's time per image hardly depends on the batch beyond this; a GPU's does (full batch)
# The notebooks' attacks (03 and 04): the default attack, the strong attacks (APGD-CE and APGD-T) and the
# robustness curve of each attacked experiment, and the steps-by-epsilon grid of SimpleNet's (lib.report.analysis
# on lib.study.attack_settings). PER_SEED: those that evaluate every seed's run, the others the first seed's.
ATTACKED = {"simplenet": ("default", "strong", "curve", "grid"), "advsimplenet": ("default", "strong", "curve")}
PER_SEED = ("default", "strong")
# The cost measurements (lib.report.measurements): models timed side by side, each for ROUNDS rounds of a
# warm-up, REPEATS timed steps and one memory-recording step at its run's batch size.
MEASURED = ("simplenet", "simplenet_custom", "vit", "vit_global", "simplenet", "vit")


def training_steps(cfg, train_size, val_size):
    """Image steps of a training run of configuration `cfg` on `train_size` training and `val_size` validation
    images: per epoch, its optimizer steps x batch x (1 + the PGD iterations that craft each adversarial batch)
    and one evaluation of the validation images (train_batches / val_batches cap them, as in the trainer)."""
    steps = train_size // cfg["batch_size"]
    steps = min(steps, cfg["train_batches"] or steps)
    crafting = cfg["adversarial"]["num_steps"] if cfg["adversarial"] else 0
    return cfg["epochs"] * (steps * cfg["batch_size"] * (1 + crafting) + _evaluated(cfg, val_size) * EVAL_STEP)


def attack_steps(parts, attack, val_size):
    """Image steps of the attacks `parts` ('default', 'strong', 'curve', 'grid') on one model; attack: the
    resolved attack settings (lib.study.attack_settings); val_size: the validation images the run's predictions
    cover. Each attack also classifies its images once clean and once attacked. APGD attacks only the images
    still classified correctly: 'strong' counts every image for APGD-CE and each target class, an upper bound."""
    images = min(attack["images"] or val_size, val_size)
    curve_images = min(images, CURVE_IMAGES)
    strong = attack["strong"]
    iterations = {"default": (images, [attack["default"]["num_steps"]]),
                  "strong": (min(attack["strong_images"] or val_size, val_size),
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


def total_seconds(plan, seconds_per_image):
    """Seconds of a plan: plan [(model key, precision, image steps)]; seconds_per_image {(key, precision): s}."""
    return sum(steps * seconds_per_image[(key, precision)] for key, precision, steps in plan)


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
    """(the report's work [(model key, precision, image steps)], the configurations it needs {key: cfg}, the
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
        work.append((model_key(cfg), training_precision(cfg, device),
                     training_steps(cfg, train_size, val_size) + _evaluated(cfg, val_size) * EVAL_STEP))
        parts = [part for part in ATTACKED.get(name, ()) if replica == 0 or part in PER_SEED]
        work.append((model_key(cfg), ATTACK_PRECISION, attack_steps(parts, attack, _evaluated(cfg, val_size))))
    for name in MEASURED if {name for name, _ in to_train} & set(MEASURED) else ():
        cfg = configs[(name, 0)]
        batch = min(cfg["batch_size"], study.DRY_RUN["measure_batch"]) if cfg["dry_run"] else cfg["batch_size"]
        needed[model_key(cfg)] = cfg
        work.append((model_key(cfg), training_precision(cfg, device), measurement_steps(cfg) * batch))
    return work, needed, sorted(to_train)


def _sizes(cfg, lists):
    """(training images, validation images) a run of `cfg` uses: lists (entries of train.txt, of val.txt)
    capped by train_images / val_images."""
    train, val = lists
    return min(train, cfg["train_images"] or train), min(val, cfg["val_images"] or val)


def measure(needed, work, device):
    """{(model key, precision): seconds per image} of one timed training step (after a warm-up step) of each
    model in `needed` ({key: cfg}) in each precision `work` uses it in ('auto': see training_precision), on a seeded random batch of its run's
    batch size (at most CPU_MEASURE_BATCH on a CPU) with its training optimizer. On a GPU the step's wall time;
    on a CPU the process's CPU time over its threads: the step's time when the cores are its own, which other
    work on a shared machine inflates far less than the wall time (waiting threads still count)."""
    seconds = {}
    for key, precision in sorted({(key, precision) for key, precision, _ in work}):
        if precision == "auto":  # both timed, as the trainer's amp='auto' on a CPU does, the one it would pick kept
            fp32, bf16 = (measure(needed, [(key, p, 1)], device)[(key, p)] for p in ("fp32", "bf16"))
            seconds[(key, precision)] = bf16 if fp32 / bf16 >= AMP_MIN_SPEEDUP else fp32
            continue
        cfg = needed[key]
        batch = cfg["batch_size"] if device.type == "cuda" else min(cfg["batch_size"], CPU_MEASURE_BATCH)
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(batch, 3, cfg["image_size"], cfg["image_size"], generator=generator).to(device)
        labels = torch.randint(0, 100, (batch,), generator=generator).to(device)
        if cfg["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        model = study.build_model(cfg, pretrained=False).to(device)
        optimizer = build_optimizer(model, cfg)
        if device.type == "cuda":
            step = step_costs.time_training_step(model, images, labels, optimizer, precision)
        else:
            step = step_costs.time_training_step(model, images, labels, optimizer, precision,
                                                 clock=time.process_time) / torch.get_num_threads()
        seconds[(key, precision)] = step / batch
    return seconds


def estimate(parameters, attack=None):
    """The expected time of a report with the parameters of a lib.study.Study (its device, force_retrain,
    profile, overrides) and a notebook's `attack` overrides: {'seconds', 'runs': experiments still to train,
    'device': the device's name, 'measured': seconds the measuring itself took}."""
    began = time.perf_counter()
    dev = devices.resolve_device(parameters.device)
    work, needed, trained = plan(parameters, dev, attack)
    seconds = total_seconds(work, measure(needed, work, dev))
    return {"seconds": seconds, "runs": len(trained), "device": devices.device_name(dev),
            "measured": time.perf_counter() - began}


def describe(result):
    """The line the terminal shows before the report starts, from an `estimate` result."""
    span = "under a second" if result["seconds"] < 1 else f"about {duration(result['seconds'])}"
    if not result["runs"]:
        return f"Estimated time of this report: {span} on {result['device']} (every run is finished and re-used)"
    return (f"Estimated time of this report: {span} on {result['device']} "
            f"({result['runs']} run{'s' if result['runs'] > 1 else ''} to train; from one training step of each "
            f"model measured just now, in {duration(result['measured'])}, as if the machine were the report's "
            "alone; other work on it and a first decode of the data set add to it)")

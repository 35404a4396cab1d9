"""An estimate of the full study's GPU time on one H100-class GPU, counted from the models' FLOPs.

Work: the project's FLOP counter (lib.training.step_costs) counts, per image at the full profile's size, one
forward pass F, a training step (forward and backward: about 2.8-2.9 F) and an attack step (forward and the
input's gradient, weights frozen: about 2 F). A run trains epochs x the full split's whole batches, each image
also attacked num_steps times in adversarial training, and validates the validation split after every epoch.
An experiment behind a comparative finding (experiments.SEEDED) trains experiments.SEEDS['full'] runs, one per
seed. The notebooks' attacks (ATTACKED) evaluate the trained SimpleNet and AdvSimpleNet in IEEE fp32: the
default PGD and the stronger APGD attacks every seed's run, the curves and the grid the first seed's.

Time: work / throughput, plus fixed costs per epoch and per run, and the one-off decode of the data set. The
throughputs are ASSUMED (bf16 training, IEEE fp32 attacks) until a GPU check has measured them:
`--from DIR/gpu_check.json` takes each experiment's measured TFLOP/s, and the measured attack rate, instead.

    python -m benchmarks.gpu_check --estimate [--json] [--from DIR/gpu_check.json]
"""
import functools

import torch

from lib import experiments
from lib.report.analysis import CURVE_IMAGES
from lib.report.estimate import ATTACKED, PER_SEED  # the notebooks' attacks, one list for both estimates
from lib.training.step_costs import backward_flops, forward_flops


FULL_IMAGES = {"train": 100_000, "val": 10_000}  # the official MiniPlaces splits


# Achieved TFLOP/s (low, likely, high) of one H100-class GPU in bf16 autocast, assumed per model. Small networks
# on 128 px images are bound by memory traffic and kernel launches more than by the ~990 TFLOP/s of dense bf16:
# about 6% of it for SimpleNet (60 TFLOP/s is ~68,000 training images/s), more for ResNet-18's wider
# convolutions, less for BatchNorm's extra passes, the ViT's small matmuls and the custom convolution's unfold.
ASSUMED_TFLOPS = {
    "simplenet": (30, 60, 100), "simplenet_custom": (5, 15, 40), "improvednet": (25, 50, 90),
    "improvednet_table": (25, 50, 90), "resnet18": (40, 80, 150), "vit": (20, 40, 70), "vit_global": (20, 40, 70),
    "advsimplenet": (30, 60, 100),
}
# The notebooks' attacks compute in IEEE fp32 (no tensor cores; ~67 TFLOP/s peak on an H100).
ASSUMED_ATTACK_TFLOPS = (8, 15, 30)
# A measured rate is taken as the likely one; the range allows for what a synthetic step leaves out.
MEASURED_SPREAD = (0.75, 1.0, 1.1)
# Seconds (low, likely, high): per epoch (loader start, validation set-up, checkpoint and history writes), per run
# (process start, model build, mapping the decoded cache), and decoding the data set once (110,000 JPEGs).
EPOCH_SECONDS = (1, 2, 5)
RUN_SECONDS = (15, 30, 90)
DECODE_SECONDS = (30, 60, 180)




def attack_steps():
    """{attack: image-steps} of the notebooks' attacks on one run (an image attacked k steps counts k). APGD
    attacks only the images the model gets right, each target class of APGD-T only those still classified
    correctly: 'strong' counts every image in every run of both, an upper bound."""
    harness, images = experiments.ATTACKS["default"], experiments.ATTACKS["images"]["full"] or FULL_IMAGES["val"]
    curve = len(experiments.ATTACKS["epsilons"]) * harness["num_steps"] * CURVE_IMAGES
    grid = len(experiments.ATTACKS["grid_scales"]) * max(experiments.ATTACKS["grid_steps"]) * CURVE_IMAGES
    apgd = experiments.STRONG_ATTACKS
    strong = (apgd["steps"]["full"] * apgd["restarts"]["full"] * (1 + apgd["target_classes"])
              * (apgd["images"]["full"] or FULL_IMAGES["val"]))
    return {"default": harness["num_steps"] * images, "strong": strong, "curve": curve, "grid": grid}


def seeds(name):
    """The number of runs of experiment `name` in the full study: one per training seed when it is SEEDED."""
    return experiments.SEEDS["full"] if name in experiments.SEEDED else 1


def per_image_flops(cfg):
    """{'forward', 'train_step', 'attack_step'}: FLOPs per image of a configuration's model at its image size."""
    model = experiments.build_model(cfg, pretrained=False)
    images, labels = torch.rand(2, 3, cfg["image_size"], cfg["image_size"]), torch.tensor([0, 1])
    return {"forward": forward_flops(model, images) / 2, "train_step": backward_flops(model, images, labels) / 2,
            "attack_step": backward_flops(model, images, labels, weights=False) / 2}


@functools.lru_cache(maxsize=None)
def work(name):
    """The FLOPs of experiment `name`'s full runs, every seed's ('train': training steps, PGD crafting and
    per-epoch validation) and of the notebooks' attacks on them ('attack'), with the per-image counts."""
    cfg = experiments.config(name, "full")
    flops = per_image_flops(cfg)
    trained = cfg["epochs"] * (FULL_IMAGES["train"] // cfg["batch_size"]) * cfg["batch_size"]
    pgd = cfg["adversarial"]["num_steps"] if cfg["adversarial"] else 0
    train = trained * (flops["train_step"] + pgd * flops["attack_step"]) + cfg["epochs"] * FULL_IMAGES["val"] * \
        flops["forward"]
    steps, runs = attack_steps(), seeds(name)
    attacked = sum(steps[kind] * (runs if kind in PER_SEED else 1) for kind in ATTACKED.get(name, ()))
    return {"train": runs * train, "attack": attacked * flops["attack_step"], "epochs": cfg["epochs"], "seeds": runs,
            **flops}


def rates_of(result):
    """({experiment: TFLOP/s}, attack TFLOP/s or None): the rates a GPU check measured (benchmarks.gpu_check's
    result, as its gpu_check.json holds it)."""
    rows = result.get("experiments")
    rates = {row["experiment"]: row["TFLOP/s"] for row in rows if row.get("TFLOP/s")} if isinstance(rows, list) else {}
    return rates, (result.get("sanity") or {}).get("attack TFLOP/s")


def estimate(measured=None):
    """{experiment: {train_pflop, attack_pflop, minutes_low, minutes_likely, minutes_high}, 'total': {...}}.

    measured: (rates, attack_rate) from `rates_of`, replacing the assumed throughputs where present.
    """
    rates, attack_rate = measured or ({}, None)
    attack_range = [attack_rate * s for s in MEASURED_SPREAD] if attack_rate else ASSUMED_ATTACK_TFLOPS
    out = {}
    for name in experiments.EXPERIMENTS:
        counted = work(name)
        train_range = [rates[name] * s for s in MEASURED_SPREAD] if name in rates else ASSUMED_TFLOPS[name]
        minutes = [(counted["train"] / (train * 1e12) + counted["attack"] / (attack * 1e12)
                    + counted["seeds"] * (counted["epochs"] * epoch + run)) / 60
                   for train, attack, epoch, run in zip(reversed(train_range), reversed(attack_range),
                                                        EPOCH_SECONDS, RUN_SECONDS)]
        out[name] = {"seeds": counted["seeds"], "train_pflop": counted["train"] / 1e15,
                     "attack_pflop": counted["attack"] / 1e15,
                     "forward_gflop_per_image": counted["forward"] / 1e9,
                     "train_step_forwards": counted["train_step"] / counted["forward"],
                     "attack_step_forwards": counted["attack_step"] / counted["forward"],
                     "measured": name in rates, **dict(zip(("minutes_low", "minutes_likely", "minutes_high"), minutes))}
    total = {key: sum(row[key] for row in out.values()) for key in ("train_pflop", "attack_pflop")}
    for key, decode in zip(("minutes_low", "minutes_likely", "minutes_high"), DECODE_SECONDS):
        total[key] = sum(row[key] for row in out.values()) + decode / 60
    out["total"] = total
    return out

"""torch.compile on this machine: its start-up against its steady speed-up, per model, at a profile's settings.

Per experiment (default: SimpleNet, ResNet-18 and the windowed ViT), at the profile's batch, image size and memory
format, in IEEE fp32 or the --precision given, on one seeded random batch, in one process: the first step of the
compiled model (compilation included) and of the eager one, then --rounds rounds that time one step of each in
turn. Speed-up: eager step / compiled step, median and range over the rounds; payback: the steps after which the
compiled run has made up its compilation ((first compiled step - eager step) / (eager step - compiled step);
never when it is not faster); steps per run: the optimizer steps of the profile's run of that experiment.

    python -m benchmarks.compile [--profile sample] [--experiments simplenet resnet18 vit] [--rounds 7]
"""
import argparse
import json
from pathlib import Path
import statistics
import time

import torch
import torch.nn.functional as F

from lib import experiments
from lib.core.devices import precision_context
from lib.data.layout import fingerprint
from lib.training.trainer import build_optimizer


def training_step(model, optimizer, images, labels):
    """A plain training step (forward, loss, backward, optimizer) as a closure timed by wall clock."""
    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def seconds(step):
    """Wall-clock seconds of step() on the CPU."""
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def memory_format(cfg):
    """The run's memory format: channels_last or contiguous."""
    return torch.channels_last if cfg["channels_last"] else torch.contiguous_format


def seeded_batch(cfg):
    """(images (B, 3, S, S) in [0, 1] in the run's memory format, labels (B,)): B the run's batch, S its image size;
    the same for every call (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(cfg["batch_size"], 3, cfg["image_size"], cfg["image_size"], generator=generator)
    return images.contiguous(memory_format=memory_format(cfg)), torch.randint(0, 100, (cfg["batch_size"],),
                                                                              generator=generator)


def compare(cfg, rounds, precision):
    """{'first': {eager, compiled}: seconds of the first step, 'steps': {eager, compiled}: per-round seconds}."""
    fmt, (images, labels) = memory_format(cfg), seeded_batch(cfg)
    steps = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = experiments.build_model(cfg, pretrained=False).to(memory_format=fmt).train()
        net = torch.compile(model) if mode == "compiled" else model
        steps[mode] = training_step(net, build_optimizer(model, cfg), images, labels)
    with precision_context(precision, torch.device("cpu")):
        first = {mode: seconds(step) for mode, step in steps.items()}
        timed = {mode: [] for mode in steps}
        for _ in range(rounds):
            for mode, step in steps.items():
                timed[mode].append(seconds(step))
    return {"first": first, "steps": timed}


def row(name, cfg, result, run_steps):
    """A table row: experiment, batch, first steps, medians, speed-up [range], payback and the run's steps."""
    eager, compiled = (statistics.median(result["steps"][mode]) for mode in ("eager", "compiled"))
    ratios = [a / b for a, b in zip(result["steps"]["eager"], result["steps"]["compiled"])]
    payback = ((result["first"]["compiled"] - eager) / (eager - compiled)) if compiled < eager else None
    return (f"| {name} | {cfg['batch_size']} | {result['first']['compiled']:.1f} | {1000 * eager:.0f} | "
            f"{1000 * compiled:.0f} | {statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] | "
            f"{'never' if payback is None else f'{payback:,.0f}'} | {run_steps:,} |")


def run_steps(cfg):
    """Optimizer steps of a run of `cfg` on its data set (whole batches per epoch x epochs)."""
    train = fingerprint(cfg["data_dir"])["train_images"]
    return cfg["epochs"] * (min(train, cfg["train_images"] or train) // cfg["batch_size"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="sample")
    parser.add_argument("--data-dir", default=None, help="the data set of the profile's runs (default: the sample)")
    parser.add_argument("--experiments", nargs="+", default=["simplenet", "resnet18", "vit"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__} (capability "
          f"{torch.backends.cpu.get_cpu_capability()}), {args.precision}; medians of {args.rounds} rounds")
    print("| experiment | batch | first compiled step (s) | eager step (ms) | compiled step (ms) | speed-up [range] "
          "| payback (steps) | steps per run |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name in args.experiments:
        cfg = experiments.config(name, args.profile, args.data_dir)
        results[name] = compare(cfg, args.rounds, args.precision)
        print(row(name, cfg, results[name], run_steps(cfg)), flush=True)
    Path(__file__).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

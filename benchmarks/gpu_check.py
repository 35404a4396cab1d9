"""GPU check before spending GPU hours on the full study (`make gpu-check`).

On a CUDA machine, within a time budget (default 450 s on one GPU):
1. the tests marked `cuda` (`pytest -m cuda`);
2. the convolution benchmark on CUDA (`python -m benchmarks.conv --device cuda`);
3. for every experiment of the registry, a capped epoch of its full-profile configuration (model, image size,
   batch sizes, adversarial training, DataLoader workers) with bf16 autocast on/off and channels_last on/off:
   training and validation images/s, peak GPU memory, and the projected wall time of the full study
   (full-profile epochs x (100,000 training + 10,000 validation images) at the measured rates), in minutes.
   The images are random uint8 tensors of the cached size (the decoded cache serves the real ones from
   memory), so the check needs no data set; ResNet-18 starts from random weights (no download).
Then the on-paper estimate beside it (`paper_estimate`). Without CUDA it says so in one line and exits 0.
Exit status 1 when a test, the benchmark or a measurement failed. Writes benchmarks/gpu_check.json (--json).

    python -m benchmarks.gpu_check [--steps 10] [--budget 450] [--experiments simplenet vit ...]
    python -m benchmarks.gpu_check --device cpu --profile smoke --steps 1   # the measuring code on a CPU
    python -m benchmarks.gpu_check --estimate [--tflops 250]                # the on-paper table only
"""
import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import time

import torch
from torch.utils.data import TensorDataset

from lib import data, experiments
from lib.core.devices import device_name, peak_memory_mb, resolve_device
from lib.training.step_costs import forward_flops, timed
from lib.training.trainer import Trainer


FULL_IMAGES = {"train": 100_000, "val": 10_000}  # the official MiniPlaces splits
# Assumed achieved training throughput of one H100 for the on-paper estimate: about a tenth of its
# ~989 TFLOP/s dense bf16 peak. Small networks on 128 px images are bound by memory traffic and kernel
# launches more than by the tensor cores; the GPU check measures what they really reach.
ASSUMED_TFLOPS = 100.0


def projected_minutes(name, train_rate, val_rate):
    """Minutes for experiment `name`'s full-profile run: every epoch trains on the full training split and
    validates on the full validation split at the given images/s."""
    epochs = experiments.config(name, "full")["epochs"]
    return epochs * (FULL_IMAGES["train"] / train_rate + FULL_IMAGES["val"] / val_rate) / 60


def paper_estimate(tflops=ASSUMED_TFLOPS):
    """Per experiment of the full study: forward GFLOP per image (lib.training.step_costs.forward_flops), PFLOP of the
    whole run and minutes at `tflops` TFLOP/s achieved. A training image costs 3 forward passes (forward +
    backward); each PGD step of adversarial training one forward + backward more (3 forward passes);
    each validation image 1 forward pass."""
    rows = []
    for name in experiments.EXPERIMENTS:
        cfg = experiments.config(name, "full")
        size = cfg["image_size"]
        forward = forward_flops(experiments.build_model(cfg, pretrained=False), torch.zeros(1, 3, size, size))
        pgd_steps = cfg["adversarial"]["num_steps"] if cfg["adversarial"] else 0
        per_epoch = forward * (3 * (1 + pgd_steps) * FULL_IMAGES["train"] + FULL_IMAGES["val"])
        total = cfg["epochs"] * per_epoch
        rows.append({"experiment": name, "epochs": cfg["epochs"], "forward GFLOP/image": forward / 1e9,
                     "PGD steps": pgd_steps, "PFLOP": total / 1e15, "minutes": total / (tflops * 1e12) / 60})
    return rows


def synthetic(count, side, seed):
    """TensorDataset(random uint8 (count, 3, side, side), random labels (count,))."""
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator),
                         torch.randint(0, data.NUM_CLASSES, (count,), generator=generator))


def measure(name, profile, device, amp, channels_last, steps):
    """One experiment's training and validation rate (images/s) over `steps` batches each, after a
    warm-up pass of the same length, and the peak memory (MiB) of the measured pass."""
    cfg = experiments.config(name, profile, amp=amp, channels_last=channels_last)
    size = cfg["image_size"]
    side = data.base_size(size)
    train_set = synthetic(steps * cfg["batch_size"], side, seed=0)
    val_set = synthetic(steps * cfg["val_batch_size"], side, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(experiments.build_model(cfg, pretrained=False), train_set, val_set, data.TrainAugment(size),
                          data.EvalTransform(size), cfg, tmp, device=device, input_hook=experiments.input_hook(cfg),
                          progress=False)
        trainer.train_epoch()  # warm-up: kernel selection, DataLoader workers, optimizer state
        trainer.validate()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train_s = timed(trainer.train_epoch, device)
        val_s = timed(trainer.validate, device)
    train_rate, val_rate = len(train_set) / train_s, len(val_set) / val_s
    return {"experiment": name, "amp": amp, "channels_last": channels_last, "train images/s": train_rate,
            "val images/s": val_rate, "peak MiB": peak_memory_mb(device),
            "projected min": projected_minutes(name, train_rate, val_rate)}


def _cell(value):
    """Floats to 3 significant digits (whole numbers from 1000 up); anything else as str."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def markdown(rows, columns):
    """A Markdown table of `rows` (dicts) with `columns`."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows])


def study_totals(rows, configured_amp, profile="full"):
    """Projected minutes of the whole study: with the registry's settings (amp as configured, each
    experiment's channels_last in `profile`) and with each experiment's fastest measured setting. None where an
    experiment was not measured."""
    by_name = {}
    for row in rows:
        if "projected min" in row:
            by_name.setdefault(row["experiment"], []).append(row)
    if set(by_name) != set(experiments.EXPERIMENTS):
        return None
    configured = [r for name, rs in by_name.items() for r in rs if r["amp"] == configured_amp
                  and r["channels_last"] == experiments.config(name, profile)["channels_last"]]
    return {"registry settings": sum(r["projected min"] for r in configured) if len(configured) == len(by_name)
            else None, "fastest setting each": sum(min(r["projected min"] for r in rs) for rs in by_name.values())}


def run_step(title, command, deadline):
    """Run one command of the check with the time that is left; True when it succeeded."""
    left = deadline - time.monotonic()
    print(f"\n## {title}\n$ {' '.join(command)}", flush=True)
    if left < 30:
        print("skipped: the time budget is spent")
        return True
    try:
        return subprocess.run(command, timeout=left).returncode in (0, 5)  # 5: pytest found no tests
    except subprocess.TimeoutExpired:
        print(f"stopped after {left:.0f} s: the time budget is spent")
        return False


def measurements(args, device, deadline):
    rows, failed = [], False
    for name in args.experiments:
        for amp in args.amp:
            for channels_last in args.channels_last:
                setting = {"experiment": name, "amp": amp, "channels_last": channels_last == "on"}
                if time.monotonic() > deadline:
                    rows.append({**setting, "note": "skipped: time budget spent"})
                    continue
                try:
                    rows.append(measure(name, args.profile, device, amp, channels_last == "on", args.steps))
                except (RuntimeError, ValueError) as exc:  # out of memory, unsupported kernel, ...
                    failed = True
                    rows.append({**setting, "note": f"failed: {str(exc).splitlines()[0][:80]}"})
                print(", ".join(f"{key} {_cell(value)}" for key, value in rows[-1].items()), flush=True)
    return rows, failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (exercises the measuring code)")
    parser.add_argument("--profile", default="full", choices=list(experiments.PROFILES))
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps timed per setting")
    parser.add_argument("--budget", type=float, default=450, help="seconds for the whole check")
    parser.add_argument("--experiments", nargs="+", default=list(experiments.EXPERIMENTS))
    parser.add_argument("--amp", nargs="+", default=["bf16", "off"], choices=["bf16", "off"])
    parser.add_argument("--channels-last", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--tflops", type=float, default=ASSUMED_TFLOPS, help="assumed achieved TFLOP/s (paper)")
    parser.add_argument("--estimate", action="store_true", help="print the on-paper estimate only")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"), help="results file")
    args = parser.parse_args(argv)
    paper_columns = ["experiment", "epochs", "forward GFLOP/image", "PGD steps", "PFLOP", "minutes"]
    paper = paper_estimate(args.tflops)
    minutes = sum(r["minutes"] for r in paper)
    paper_note = (f"On paper, {args.tflops:g} TFLOP/s achieved: {minutes:.0f} min ({minutes / 60:.1f} h) for the "
                  "whole study (training and validation, attacks not included).")
    if args.estimate:
        print(markdown(paper, paper_columns) + "\n\n" + paper_note)
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU is visible here, so nothing was checked (run it on a CUDA machine).")
        return 0
    device = resolve_device(args.device)
    deadline = time.monotonic() + args.budget
    print(f"# GPU check on {device_name(device)}, torch {torch.__version__}, budget {args.budget:.0f} s")
    ok = True
    if device.type == "cuda":
        ok &= run_step("tests marked cuda", [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "tests"], deadline)
        ok &= run_step("convolution benchmark", [sys.executable, "-m", "benchmarks.conv", "--device", "cuda",
                                                 "--repeats", "3"], deadline)
    print(f"\n## capped epochs ({args.profile} profile, {args.steps} steps timed after as many warm-up steps)")
    rows, failed = measurements(args, device, deadline)
    columns = ["experiment", "amp", "channels_last", "train images/s", "val images/s", "peak MiB",
               "projected min", "note"]
    print("\n" + markdown(rows, columns))
    configured_amp = "bf16" if device.type == "cuda" else "off"  # what amp="auto" resolves to here
    totals = study_totals(rows, configured_amp, args.profile)
    if totals:
        print("\nprojected whole study (training and validation): " + ", ".join(
            f"{k} {v:.0f} min ({v / 60:.1f} h)" for k, v in totals.items() if v is not None))
    print("\n" + markdown(paper, paper_columns) + "\n\n" + paper_note)
    args.json.write_text(json.dumps(
        {"device": device_name(device), "profile": args.profile, "steps": args.steps, "rows": rows,
         "totals": totals, "paper": paper, "assumed_tflops": args.tflops}, indent=2) + "\n")
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())

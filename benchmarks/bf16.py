"""Where bf16 autocast gains or loses time on this CPU: one model's training step, per operator, fp32 against bf16.

Per experiment (default: the windowed ViT and SimpleNet of the cpu-full profile, at its batch, image size and
memory format, on one seeded random batch, in one process): --rounds rounds, each profiling --steps training steps
(forward, loss, backward, optimizer) in IEEE fp32 and then --steps in bf16 autocast (lib.core.devices.
precision_context) after one untimed step of each. torch.profiler's self CPU time per operator is summed over the
rounds and divided by the steps: ms per step in each precision, the difference, and the casts bf16 adds
(aten::to / aten::_to_copy / aten::copy_). The rows are the operators whose difference is largest either way; the
last row is the whole step (wall clock, medians over the rounds). Prints a table; writes benchmarks/bf16.json.

    python -m benchmarks.bf16 [--profile cpu-full] [--experiments vit simplenet] [--rounds 3] [--steps 3] [--rows 12]
"""
import argparse
from collections import Counter
import json
from pathlib import Path
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.compile import memory_format, seeded_batch, training_step
from lib import experiments
from lib.core.devices import precision_context
from lib.training.trainer import build_optimizer

PRECISIONS = ("fp32", "bf16")


def step_closure(cfg):
    """A training step of `cfg`'s model (as the trainer builds it, its optimizer) on a seeded random batch."""
    torch.manual_seed(0)
    model = experiments.build_model(cfg, pretrained=False).to(memory_format=memory_format(cfg)).train()
    return training_step(model, build_optimizer(model, cfg), *seeded_batch(cfg))


def profiled(step, precision, steps):
    """(Counter {operator: self CPU microseconds} over `steps` steps, wall seconds of each step)."""
    walls = []
    with precision_context(precision, torch.device("cpu")), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            began = time.perf_counter()
            step()
            walls.append(time.perf_counter() - began)
    return Counter({event.key: event.self_cpu_time_total for event in prof.key_averages()}), walls


def compare(cfg, rounds, steps):
    """{'ops': {precision: {operator: ms per step}}, 'wall': {precision: [s per step]}}, rounds interleaved."""
    step = step_closure(cfg)
    totals, walls = {p: Counter() for p in PRECISIONS}, {p: [] for p in PRECISIONS}
    for precision in PRECISIONS:  # untimed warm-up of each
        with precision_context(precision, torch.device("cpu")):
            step()
    for _ in range(rounds):
        for precision in PRECISIONS:
            ops, wall = profiled(step, precision, steps)
            totals[precision] += ops
            walls[precision] += wall
    per_step = rounds * steps * 1000  # microseconds summed over all steps -> milliseconds per step
    return {"ops": {p: {op: us / per_step for op, us in totals[p].items()} for p in PRECISIONS}, "wall": walls}


CASTS = ("aten::to", "aten::_to_copy", "aten::copy_")


def table(name, result, rows):
    """Markdown rows: the `rows` operators with the largest |bf16 - fp32|, the casts, and the whole step."""
    fp32, bf16 = result["ops"]["fp32"], result["ops"]["bf16"]
    ops = sorted(set(fp32) | set(bf16), key=lambda op: -abs(bf16.get(op, 0) - fp32.get(op, 0)))[:rows]
    lines = [f"| {name} | {op} | {fp32.get(op, 0):.1f} | {bf16.get(op, 0):.1f} | "
             f"{bf16.get(op, 0) - fp32.get(op, 0):+.1f} |" for op in ops]
    cast32, cast16 = (sum(side.get(op, 0) for op in CASTS) for side in (fp32, bf16))
    lines.append(f"| {name} | casts ({', '.join(CASTS)}) | {cast32:.1f} | {cast16:.1f} | {cast16 - cast32:+.1f} |")
    wall32, wall16 = (1000 * statistics.median(result["wall"][p]) for p in PRECISIONS)
    lines.append(f"| {name} | **whole step (wall clock)** | {wall32:.1f} | {wall16:.1f} | {wall16 - wall32:+.1f} "
                 f"({wall16 / wall32:.2f}x) |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-full")
    parser.add_argument("--data-dir", default=None, help="the data set of the profile's runs (default: the sample)")
    parser.add_argument("--experiments", nargs="+", default=["vit", "simplenet"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__} (capability "
          f"{torch.backends.cpu.get_cpu_capability()}); {args.profile} settings; self CPU ms per training step "
          f"summed over {args.rounds} rounds of {args.steps} steps")
    print("| experiment | operator | fp32 (ms) | bf16 (ms) | bf16 - fp32 (ms) |")
    print("|---|---|---|---|---|")
    results = {}
    for name in args.experiments:
        cfg = experiments.config(name, args.profile, args.data_dir)
        results[name] = compare(cfg, args.rounds, args.steps)
        print("\n".join(table(f"{name} (batch {cfg['batch_size']})", results[name], args.rows)), flush=True)
    Path(__file__).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

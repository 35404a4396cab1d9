"""GPU check: in one call on a bare, offline GPU machine, what the full study needs, and how fast it will run.

    python3 -m benchmarks.gpu_check --out DIR                         # a CUDA GPU, within BUDGET (7 minutes)
    python3 -m benchmarks.gpu_check --device cpu --quick --out DIR    # the same code on a CPU, in under a minute
    python3 -m benchmarks.gpu_check --estimate [--json] [--from DIR/gpu_check.json]   # the estimate only

It needs torch (with the fp32_precision settings, docs/gpu.md), torchvision, numpy, pandas, matplotlib, pillow,
pyyaml, tqdm and pytest, nothing of the Jupyter stack. Sections, in gpu_sections, each with its share of BUDGET: the tests, the experiments and the
pipeline stop when their share is spent (the table says what was skipped); the convolution check and the sanity
run are of a fixed size that fits theirs. The result records each section's seconds.
1. versions: Python, torch, torchvision, the GPU, its driver, CUDA, cuDNN;
2. tests: the tests marked `cuda` (pytest -m cuda tests);
3. conv: the custom convolution and nn.Conv2d against an fp64 reference in IEEE fp32 and bf16 autocast;
4. experiments: every experiment at the full profile's settings, a warm-up epoch then >= STEPS timed steps:
   ms/step, images/s, peak memory, achieved TFLOP/s; on a GPU SimpleNet also compiled (torch.compile);
5. pipeline: the input pipeline's ceiling (DataLoader and device-resident) on a synthetic split of the full
   training split's size (100,000 images at 144 px, 6.2 GB);
6. sanity: SimpleNet trained one epoch on the embedded sample at 128 px, the default PGD on 500 validation images.
Then the estimate of the whole study (benchmarks.estimate) from these measurements. Writes DIR/gpu_check.json and
DIR/gpu_check.md (the Markdown tables, also printed). Exit status 1 when a test, a check or a measurement failed.
Without CUDA, `--device cuda` (the default) says so in one line and exits 0.
"""
import argparse
import json
from pathlib import Path
import sys
import tempfile
import time
import traceback

import torch

from benchmarks import estimate, gpu_sections
from lib import experiments
from lib.core.devices import resolve_device


BUDGET = {"tests": 150, "conv": 15, "experiments": 120, "pipeline": 60, "sanity": 75}  # seconds: 420 (7 min)
STEPS = 40  # timed optimizer steps per experiment (after as many warm-up steps)
COMPILE_SECONDS = 90  # SimpleNet is measured compiled too when this much of the experiments' share is left
FULL_SPLIT = 100_000  # training images of the full data set
# --quick: the same sections at the smoke profile's sizes, on a small synthetic split, a share of the time each.
QUICK = dict(profile="smoke", steps=1, split=1024, workers=2, scale=0.15)


def markdown(rows, columns=None):
    """A Markdown table of `rows` (dicts; columns: the keys of the first row unless given)."""
    columns = columns or (list(rows[0]) if rows else [])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows])


def _cell(value):
    """Floats to 3 significant digits (whole numbers from 1000 up), small ones in e-notation; others as str."""
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.1e}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


class Section:
    """One section's time share: `left()` seconds until its end (never past the whole check's deadline)."""

    def __init__(self, seconds, deadline):
        self.end = min(time.monotonic() + seconds, deadline)

    def left(self):
        return self.end - time.monotonic()


def measure_experiments(device, profile, steps, share):
    """gpu_sections.experiment_row for every experiment while `share` has time; a failure is a row with a note."""
    rows = []
    for name in experiments.EXPERIMENTS:
        if share.left() <= 0:
            rows.append({"experiment": name, "note": "skipped: its share of the budget is spent"})
            continue
        try:
            rows.append(gpu_sections.experiment_row(name, profile, device, steps))
        except (RuntimeError, ValueError) as exc:  # out of memory, a missing kernel, ...
            rows.append({"experiment": name, "note": f"failed: {str(exc).splitlines()[0][:100]}"})
        print(", ".join(f"{k} {_cell(v)}" for k, v in rows[-1].items()), flush=True)
    if device.type == "cuda" and share.left() > COMPILE_SECONDS:  # the data for the `compile` default
        try:
            rows.append(gpu_sections.experiment_row("simplenet", profile, device, steps, compile=True))
        except Exception as exc:  # torch.compile raises its own errors (no compiler, an unsupported op, ...)
            rows.append({"experiment": "simplenet (compiled)",
                         "note": f"not measured: torch.compile: {str(exc).splitlines()[0][:100]}"})
    return rows


def check(device, quick, deadline, results_dir):
    """Every section in turn; returns the result (plain data) and whether every check passed."""
    scale = QUICK["scale"] if quick else 1.0
    profile, steps = (QUICK["profile"], QUICK["steps"]) if quick else ("full", STEPS)

    def share(name):  # a section's time, counted from its start
        return Section(BUDGET[name] * scale, deadline)

    result = {"versions": gpu_sections.versions(device), "profile": profile, "budget_s": sum(BUDGET.values()) * scale,
              "seconds": {}}
    print(markdown([result["versions"]]), flush=True)
    cfg = experiments.config("simplenet", profile)
    split = QUICK["split"] if quick else FULL_SPLIT
    workers = QUICK["workers"] if quick else cfg["num_workers"]
    sections = {
        "tests": lambda: gpu_sections.cuda_tests(share("tests").left()) if device.type == "cuda" else
        {"passed": True, "summary": "not run: the tests marked cuda need a GPU"},
        "conv": lambda: gpu_sections.conv_agreement(device),
        "experiments": lambda: measure_experiments(device, profile, steps, share("experiments")),
        "pipeline": lambda: gpu_sections.pipeline_rows(device, split, cfg["image_size"], cfg["batch_size"], workers,
                                                       max(1.0, share("pipeline").left())),
        "sanity": lambda: gpu_sections.sanity(device, profile, results_dir)}
    for name, section in sections.items():
        print(f"\n## {name}", flush=True)
        start = time.monotonic()
        try:
            result[name] = section()
        except Exception as exc:  # a section that breaks is reported; the others still run
            traceback.print_exc()
            result[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        result["seconds"][name] = time.monotonic() - start
    # the estimate counts FLOPs at 128 px for every model (seconds on a CPU); --estimate alone exercises it
    result["estimate"] = {} if quick else estimate.estimate(estimate.rates_of(result))
    return result, _passed(result, quick)


def _passed(result, quick):
    """Whether no section broke, the tests passed, the convolutions agree, no experiment failed and (outside
    --quick, at the full profile's settings) the sanity run's loss fell. Its attack's verdict is reported, not
    required: on a CPU the one-epoch model stayed at chance and the attack reached its target on none of 500
    images (docs/gpu.md), so what a GPU run shows has to set that bar first."""
    if any(isinstance(result[name], dict) and "error" in result[name] for name in BUDGET):
        return False
    failed = [row for row in result["experiments"] if row.get("note", "").startswith("failed")]
    sanity = result["sanity"]
    return (result["tests"]["passed"] and all(row["ok"] for row in result["conv"]) and not failed
            and (quick or sanity["loss falls"]))


def _table(value, columns=None):
    """A section's Markdown: its rows (a list) or its one row (a dict) as a table, or the error that broke it."""
    if isinstance(value, dict) and "error" in value:
        return f"FAILED: {value['error']}"
    return markdown(value if isinstance(value, list) else [value], columns)


def report(result):
    """The check's Markdown: one table per section."""
    tests = result["tests"]
    tests = _table(tests) if "error" in tests else f"{'passed' if tests['passed'] else 'FAILED'}: {tests['summary']}"
    estimate_rows = [{"experiment": name, **row} for name, row in result["estimate"].items()] or \
        [{"experiment": "not estimated in --quick mode (see --estimate)"}]
    return "\n\n".join([
        "# GPU check", markdown([result["versions"]]),
        f"## CUDA tests\n\n{tests}",
        "## Custom convolution against nn.Conv2d (errors relative to an fp64 reference)", _table(result["conv"]),
        f"## Training steps ({result['profile']} profile settings, synthetic batches on the device)",
        _table(result["experiments"], ["experiment", "precision", "batch", "steps", "ms/step", "images/s",
                                       "peak MiB", "TFLOP/s", "warm-up s", "note"]),
        "## Input pipeline ceiling (uint8 batches delivered on the device)", _table(result["pipeline"]),
        "## Sanity: SimpleNet, one epoch on the embedded sample, then the default PGD", _table(result["sanity"]),
        "## Estimate of the whole study (minutes; this check's measured rates where it measured the full profile)",
        markdown(estimate_rows, ["experiment", "seeds", "train_pflop", "attack_pflop", "measured", "minutes_low",
                                 "minutes_likely", "minutes_high"])])


def run_estimate(args):
    """--estimate: the estimate's table (or JSON), from assumed rates or a check's measured ones (--from)."""
    rates = estimate.rates_of(json.loads(Path(args.source).read_text())) if args.source else None
    table = estimate.estimate(rates)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(markdown([{"experiment": name, **row} for name, row in table.items()]))
    total = table["total"]
    print(f"\nEstimate, one H100-class GPU ({'measured' if rates else 'assumed'} throughputs): "
          f"{total['minutes_likely']:.0f} min (low {total['minutes_low']:.0f}, high {total['minutes_high']:.0f}).")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="smoke-profile sizes and a share of the time")
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check"), help="folder for the JSON and table")
    parser.add_argument("--estimate", action="store_true", help="print the estimate of the full study only")
    parser.add_argument("--json", action="store_true", help="with --estimate: print it as JSON")
    parser.add_argument("--from", dest="source", help="with --estimate: a check's gpu_check.json (measured rates)")
    args = parser.parse_args(argv)
    if args.estimate:
        return run_estimate(args)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU is visible here, so nothing was checked (run it on a CUDA machine).")
        return 0
    device = resolve_device(args.device)
    deadline = time.monotonic() + sum(BUDGET.values()) * (QUICK["scale"] if args.quick else 1.0)
    with tempfile.TemporaryDirectory() as results_dir:
        result, passed = check(device, args.quick, deadline, results_dir)
    result["passed"] = passed
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = report(result)
    (args.out / "gpu_check.md").write_text(table + "\n")
    print("\n" + table + f"\n\n{'passed' if passed else 'FAILED'}; wrote {args.out}/gpu_check.json and .md")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

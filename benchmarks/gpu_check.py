"""GPU check: in one call on a bare, offline GPU machine, what the full study needs, and how fast it will run.

    python3 -m benchmarks.gpu_check --out DIR                         # a CUDA GPU, within 400 s (--budget)
    python3 -m benchmarks.gpu_check --device cpu --quick --out DIR    # the same code on a CPU, within 120 s
    python3 -m benchmarks.gpu_check --estimate [--json] [--from DIR/gpu_check.json]   # the estimate only

It needs torch (with the fp32_precision settings, docs/gpu.md), torchvision, numpy, pandas, matplotlib, pillow,
pyyaml, tqdm and pytest, nothing of the Jupyter stack. The budget is hard: each section has its share of it (BUDGET,
scaled to --budget) and is stopped at its end (benchmarks.budget), saying what it did not do; the whole check ends
within --budget seconds of its start. Sections, in gpu_sections:
1. versions: Python, torch, torchvision, the GPU, its driver, CUDA, cuDNN;
2. tests: `pytest -m cuda tests` (on a CPU the same collection of every test module, the cuda tests skipped);
3. conv: the custom convolution and nn.Conv2d against an fp64 reference in IEEE fp32 and bf16 autocast;
4. experiments: every experiment at the full profile's settings, a warm-up epoch then >= STEPS timed steps:
   ms/step, images/s, peak memory, achieved TFLOP/s;
5. compile: right after eager SimpleNet, SimpleNet under torch.compile, with a share of its own (a GPU only; the
   row says why when it is skipped);
6. pipeline: the input pipeline's ceiling (DataLoader and device-resident) on a synthetic split of the full
   training split's size (100,000 images at 144 px, 6.2 GB);
7. sanity: SimpleNet trained one epoch on the embedded sample at 128 px, the default PGD on 500 validation images;
8. estimate: the whole study (benchmarks.estimate) from these measurements (not in --quick).
Writes DIR/gpu_check.json and DIR/gpu_check.md (the Markdown tables, also printed). Exit status 1 when a section
broke, a test, the convolution check or a measurement failed, or the sanity run could not show its loss falling.
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
from benchmarks.budget import OutOfTime, Share
from lib import experiments
from lib.core.devices import resolve_device


# Each section's share, seconds of the default budget (400 s: with Python's start-up the check ends within 7 minutes
# on an H100-class GPU); --budget scales every share.
BUDGET = {"tests": 105, "conv": 10, "experiments": 100, "compile": 60, "pipeline": 40, "sanity": 55, "estimate": 30}
QUICK_BUDGET = 120  # seconds: --quick's default budget (its work is small; a loaded CPU is slow)
STEPS = 40  # timed optimizer steps per experiment (after as many warm-up steps)
FULL_SPLIT = 100_000  # training images of the full data set
# --quick: the same sections at the smoke profile's sizes, on a small synthetic split.
QUICK = dict(profile="smoke", steps=1, split=1024, workers=2)
COMPILED = "simplenet (compiled)"


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


def measure_experiments(device, profile, steps, share, after_simplenet=lambda: None):
    """gpu_sections.experiment_row for every experiment while `share` (running) has time; an experiment its end
    stops, or one that fails, is a row with a note. `after_simplenet()` runs right after eager SimpleNet, outside
    this share (it has its own)."""
    rows = []
    for name in experiments.EXPERIMENTS:
        try:
            if share.left() <= 0:
                row = {"experiment": name, "note": "skipped: its share of the budget is spent"}
            else:
                row = gpu_sections.experiment_row(name, profile, device, steps)
        except OutOfTime:
            row = {"experiment": name, "note": share.stopped()}
        except (RuntimeError, ValueError) as exc:  # out of memory, a missing kernel, ...
            row = {"experiment": name, "note": f"failed: {str(exc).splitlines()[0][:100]}"}
        rows.append(row)
        print(", ".join(f"{k} {_cell(v)}" for k, v in row.items()), flush=True)
        if name == "simplenet":
            with share.paused():
                after_simplenet()
    return rows


def measure_compiled(device, profile, steps, share):
    """SimpleNet under torch.compile within `share` (gpu_sections.experiment_row with compile=True; its warm-up
    seconds include the compilation), or a row saying why it was skipped: not a GPU, its share ran out, or
    torch.compile failed."""
    if device.type != "cuda":
        return {"experiment": COMPILED,
                "note": "skipped (a CPU: the `compile` default is set from a GPU's measurement)"}
    try:
        with share.running():
            return gpu_sections.experiment_row("simplenet", profile, device, steps, compile=True)
    except OutOfTime:
        return {"experiment": COMPILED, "note": f"skipped ({share.stopped()})"}
    except Exception as exc:  # torch.compile raises its own errors (no compiler, an unsupported op, ...)
        return {"experiment": COMPILED, "note": f"skipped (torch.compile failed: {str(exc).splitlines()[0][:100]})"}


def check(device, quick, budget, results_dir):
    """Every section in turn within `budget` seconds, each within its share; returns the result (plain data) and
    whether every check passed."""
    began = time.monotonic()
    deadline = began + budget
    profile, steps = (QUICK["profile"], QUICK["steps"]) if quick else ("full", STEPS)

    def share(name):  # a section's time, counted from its start
        return Share(BUDGET[name] * budget / sum(BUDGET.values()), deadline)

    result = {"versions": gpu_sections.versions(device), "profile": profile, "budget_s": budget, "seconds": {},
              "compile": {"experiment": COMPILED, "note": "skipped (the experiments section stopped before it)"}}
    print(markdown([result["versions"]]), flush=True)

    def compile_section():
        start = time.monotonic()
        result["compile"] = measure_compiled(device, profile, steps, share("compile"))
        result["seconds"]["compile"] = time.monotonic() - start

    cfg = experiments.config("simplenet", profile)
    split = QUICK["split"] if quick else FULL_SPLIT
    workers = QUICK["workers"] if quick else cfg["num_workers"]
    sections = {
        "tests": lambda s: gpu_sections.cuda_tests(s.left() - 2),
        "conv": lambda s: gpu_sections.conv_agreement(device),
        "experiments": lambda s: measure_experiments(device, profile, steps, s, compile_section),
        "pipeline": lambda s: gpu_sections.pipeline_rows(device, split, cfg["image_size"], cfg["batch_size"],
                                                         workers, s),
        "sanity": lambda s: gpu_sections.sanity(device, profile, results_dir),
        "estimate": lambda s: {} if quick else estimate.estimate(estimate.rates_of(result))}
    for name, section in sections.items():
        print(f"\n## {name}", flush=True)
        start = time.monotonic()
        result[name] = _run(section, share(name))
        result["seconds"][name] = time.monotonic() - start
    seconds = result["seconds"]
    seconds["experiments"] -= seconds.get("compile", 0.0)  # compile had its own share
    result["seconds"] = {**{name: seconds[name] for name in BUDGET if name in seconds},
                         "total": time.monotonic() - began}
    return result, _passed(result, quick)


def _run(section, share):
    """section(share) within `share`: its result, or {'stopped': why} when its share ran out, or {'error': the
    first line} when it broke (the traceback printed)."""
    try:
        with share.running():
            return section(share)
    except OutOfTime:
        return {"stopped": share.stopped()}
    except Exception as exc:  # a section that breaks is reported; the others still run
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}


def _passed(result, quick):
    """Whether no section broke, the tests passed, the convolutions agree, no experiment failed and (outside
    --quick, at the full profile's settings) the sanity run's loss fell. A section stopped at its share fails the
    check only where it owed one of these (tests, conv, sanity). The attack's verdict is reported, not
    required: on a CPU the one-epoch model stayed at chance and the attack reached its target on none of 500
    images (docs/gpu.md), so what a GPU run shows has to set that bar first."""
    if any(isinstance(result[name], dict) and "error" in result[name] for name in BUDGET):
        return False
    rows = result["experiments"] if isinstance(result["experiments"], list) else []
    failed = [row for row in rows if row.get("note", "").startswith("failed")]
    conv = result["conv"] if isinstance(result["conv"], list) else [{"ok": False}]
    return (result["tests"].get("passed", False) and all(row["ok"] for row in conv) and not failed
            and (quick or result["sanity"].get("loss falls", False)))


def _table(value, columns=None):
    """A section's Markdown: its rows (a list) or its one row (a dict) as a table, or why it has none."""
    if isinstance(value, dict) and "error" in value:
        return f"FAILED: {value['error']}"
    if isinstance(value, dict) and "stopped" in value:
        return f"STOPPED: {value['stopped']}"
    return markdown(value if isinstance(value, list) else [value], columns)


STEP_COLUMNS = ["experiment", "precision", "batch", "steps", "ms/step", "images/s", "peak MiB", "TFLOP/s", "warm-up s",
                "note"]


def report(result):
    """The check's Markdown: one table per section, and each section's seconds against its share."""
    tests = result["tests"]
    if "passed" in tests:
        tests = f"{'passed' if tests['passed'] else 'FAILED'}: {tests['summary']}"
    else:
        tests = _table(tests)
    estimated = result["estimate"]
    estimate_rows = [{"experiment": name, **row} for name, row in estimated.items()] if "stopped" not in estimated \
        and "error" not in estimated else [{"experiment": _table(estimated)}]
    scale = result["budget_s"] / sum(BUDGET.values())
    seconds = [{"section": name, "seconds": value, "share": BUDGET[name] * scale if name in BUDGET else
                result["budget_s"]} for name, value in result["seconds"].items()]
    return "\n\n".join([
        "# GPU check", markdown([result["versions"]]),
        f"## CUDA tests (pytest -m cuda tests)\n\n{tests}",
        "## Custom convolution against nn.Conv2d (errors relative to an fp64 reference)", _table(result["conv"]),
        f"## Training steps ({result['profile']} profile settings, synthetic batches on the device)",
        _table(result["experiments"], STEP_COLUMNS),
        "## torch.compile (SimpleNet, measured right after eager SimpleNet)", _table(result["compile"], STEP_COLUMNS),
        "## Input pipeline ceiling (uint8 batches delivered on the device)", _table(result["pipeline"]),
        "## Sanity: SimpleNet, one epoch on the embedded sample, then the default PGD", _table(result["sanity"]),
        "## Estimate of the whole study (minutes; this check's measured rates where it measured the full profile)",
        markdown(estimate_rows or [{"experiment": "not estimated in --quick mode (see --estimate)"}],
                 ["experiment", "seeds", "train_pflop", "attack_pflop", "measured", "minutes_low", "minutes_likely",
                  "minutes_high"]),
        "## Seconds per section (the budget is hard: a section stops at its share)", markdown(seconds)])


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
    parser.add_argument("--budget", type=float, help=f"seconds the whole check may take, each section a share "
                        f"(default: {sum(BUDGET.values())}, with --quick {QUICK_BUDGET})")
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check"), help="folder for the JSON and table")
    parser.add_argument("--estimate", action="store_true", help="print the estimate of the full study only")
    parser.add_argument("--json", action="store_true", help="with --estimate: print it as JSON")
    parser.add_argument("--from", dest="source", help="with --estimate: a check's gpu_check.json (measured rates)")
    args = parser.parse_args(argv)
    if args.budget is not None and not args.budget > 0:
        parser.error(f"--budget takes a positive number of seconds, got {args.budget:g}")
    if args.estimate:
        return run_estimate(args)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU is visible here, so nothing was checked (run it on a CUDA machine).")
        return 0
    device = resolve_device(args.device)
    budget = args.budget or (QUICK_BUDGET if args.quick else sum(BUDGET.values()))
    with tempfile.TemporaryDirectory() as results_dir:
        result, passed = check(device, args.quick, budget, results_dir)
    result["passed"] = passed
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = report(result)
    (args.out / "gpu_check.md").write_text(table + "\n")
    print("\n" + table + f"\n\n{'passed' if passed else 'FAILED'}; wrote {args.out}/gpu_check.json and .md")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

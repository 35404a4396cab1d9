"""Speed and memory benchmarks and the GPU check; each prints a table and writes JSON beside its script."""
import argparse
import json
from pathlib import Path

import torch


def main(script, description, arguments, run, print_table):
    """The command line of a benchmark: `arguments(parser)` adds its own options to --device and --threads; then
    `run(args)` -> result, `print_table(result)`, and the result written to <script>.json."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    print_table(result)
    out = Path(script).with_suffix(".json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")

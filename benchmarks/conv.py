"""CustomConv2d vs nn.Conv2d: forward+backward time and peak memory per SimpleNet layer and per training step.

    python -m benchmarks.conv [--batch 64] [--size 128] [--repeats 5] [--device all|cpu|cuda] [--threads N]
                              [--precision both|fp32|bf16]

Each conv layer of SimpleNet is timed on the input shape it sees in the network (batch x size x size
images), each op on the memory format it gets there (nn.Conv2d: NCHW; CustomConv2d: the channels-last
output of the previous custom layer). The stem's input needs no gradient, as in the network. A whole
SimpleNet training step (zero_grad, forward, cross-entropy, backward, SGD with momentum) is timed the
same way, and once more against a native network run in channels-last memory format, for context.
Native and custom run interleaved in one process; the table gives medians over the repeats.

Precision: both ops always run in the same one, recorded in every row (lib.core.devices.precision_context).
fp32: IEEE fp32, TF32 off for cuDNN and for matmuls (by default cuDNN convolutions would use TF32 and
the custom op's matmuls full fp32). bf16: under bf16 autocast, where nn.Conv2d and the custom op both
compute in bf16 (weights fp32). On a CPU without bf16 instructions bf16 is emulated and slow for both.

Peak memory. CUDA: torch.cuda.max_memory_allocated during the steps, minus what was allocated before.
CPU: each measurement runs in a fresh subprocess in which every allocation of 64 KiB or more is mapped
on demand and unmapped when freed (MALLOC_MMAP_THRESHOLD_), so that resident memory follows live memory.
It runs one warm-up step (optimizer state, lazy initialisation), frees the custom op's reusable scratch
buffer so that the measured step has to allocate it again, reads the resident set size (VmRSS), resets
the kernel's high-water mark (/proc/self/clear_refs), runs one step and reports VmHWM - VmRSS: all the
step makes resident, torch tensors and oneDNN scratch space alike. Writes benchmarks/conv.json.
"""
import argparse
import json
import os
from pathlib import Path
import re
import statistics
import subprocess
import sys

import torch
from torch import nn
import torch.nn.functional as F

from lib.core.devices import PRECISIONS, cpu_has_native_bf16, precision_context, synchronize
from lib.models.cnn import SimpleNet
from lib.models.conv import CustomConv2d, release_workspace
from lib.training.step_costs import timed


OPS = {"native": nn.Conv2d, "custom": CustomConv2d}
STEP = "SimpleNet train step"
STEP_CHANNELS_LAST = "SimpleNet train step vs native channels-last"


def simplenet_layers(size):
    """[(name, conv kwargs, input shape without batch)] for every conv of SimpleNet on size x size images."""
    layers, net = [], SimpleNet()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, inputs, _: layers.append((m, tuple(inputs[0].shape[1:]))))
    with torch.no_grad():
        net(torch.rand(1, 3, size, size))
    return [(f"conv {m.in_channels}->{m.out_channels} {m.kernel_size[0]}x{m.kernel_size[1]}/{m.stride[0]} "
             f"@{shape[1]}x{shape[2]}",
             dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
                  stride=m.stride, padding=m.padding), shape) for m, shape in layers]


def layer_step(variant, conv_kwargs, input_shape, batch, device):
    """A closure running forward + backward of one conv layer on a fixed random input."""
    torch.manual_seed(0)
    layer = OPS[variant](**conv_kwargs).to(device)
    memory_format = torch.channels_last if variant == "custom" and input_shape[0] > 3 else torch.contiguous_format
    x = torch.rand(batch, *input_shape, device=device).contiguous(memory_format=memory_format)
    x.requires_grad_(input_shape[0] > 3)  # the stem's input (the image) needs no gradient
    grad = torch.randn_like(layer(x))

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad)
    return step


def train_step(variant, batch, size, device, channels_last=False):
    """A closure running one SimpleNet SGD step on a fixed random batch."""
    torch.manual_seed(0)
    model = SimpleNet(OPS[variant]).to(device)
    images = torch.rand(batch, 3, size, size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def build(case, variant, args, device, precision):
    """The step closure of one case ('SimpleNet train step...' or a layer name) for one variant, run in `precision`."""
    if case == STEP:
        step = train_step(variant, args.batch, args.size, device)
    elif case == STEP_CHANNELS_LAST:
        step = train_step(variant, args.batch, args.size, device, channels_last=variant == "native")
    else:
        conv_kwargs, shape = next((kw, shape) for name, kw, shape in simplenet_layers(args.size) if name == case)
        step = layer_step(variant, conv_kwargs, shape, args.batch, device)

    def step_in_precision():
        with precision_context(precision, device):
            step()
    return step_in_precision


def median_ms(steps, repeats, device):
    """{variant: median milliseconds per call}, the variants taking turns after one warm-up call each."""
    times = {variant: [] for variant in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for variant, step in steps.items():
            times[variant].append(timed(step, device))
    return {variant: 1e3 * statistics.median(t) for variant, t in times.items()}


def cuda_peak_mb(step, device):
    step()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _proc_status_kb(field):
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def cpu_peak_mb(case, variant, args, precision):
    """Peak resident memory added by one step of the case, measured in a fresh subprocess (MiB)."""
    command = [sys.executable, "-m", "benchmarks.conv", "--batch", str(args.batch), "--size", str(args.size),
               "--threads", str(torch.get_num_threads()), "--memory-of", case, variant, precision]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    result = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement of {case!r} ({variant}) failed:\n{result.stderr}")
    return float(result.stdout.split()[-1])


def report_cpu_peak(case, variant, precision, args):
    """Subprocess side of cpu_peak_mb: print VmHWM - VmRSS around one step after a warm-up, in MiB."""
    step = build(case, variant, args, torch.device("cpu"), precision)
    step()
    release_workspace()
    before = _proc_status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
    step()
    print((_proc_status_kb("VmHWM") - before) / 1024)


def ratio(custom, native):
    return custom / native if native > 0 else float("nan")  # tiny layers may add no resident memory


def measure(device, precision, args):
    """Rows of the table for one device and one precision (both ops in it)."""
    cases = [name for name, _, _ in simplenet_layers(args.size)] + [STEP, STEP_CHANNELS_LAST]
    rows = []
    for case in cases:
        steps = {variant: build(case, variant, args, device, precision) for variant in OPS}
        ms = median_ms(steps, args.repeats, device)
        if device.type == "cuda":
            mb = {variant: cuda_peak_mb(step, device) for variant, step in steps.items()}
        else:
            del steps  # free this process's copies before the subprocesses run
            mb = {variant: cpu_peak_mb(case, variant, args, precision) for variant in OPS}
        rows.append(dict(device=device.type, precision=precision, case=case, native_ms=ms["native"],
                         custom_ms=ms["custom"],
                         time_ratio=ratio(ms["custom"], ms["native"]), native_mb=mb["native"], custom_mb=mb["custom"],
                         memory_ratio=ratio(mb["custom"], mb["native"])))
        print_row(rows[-1])
    return rows


HEADER = f"{'device':6} {'prec':4} {'case':46} {'native ms':>10} {'custom ms':>10} {'ratio':>6} {'native MiB':>11} " \
         f"{'custom MiB':>11} {'ratio':>6}"


def print_row(row):
    print(f"{row['device']:6} {row['precision']:4} {row['case']:46} {row['native_ms']:10.1f} {row['custom_ms']:10.1f} "
          f"{row['time_ratio']:6.2f} {row['native_mb']:11.1f} {row['custom_mb']:11.1f} {row['memory_ratio']:6.2f}",
          flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="input images are size x size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="all: the CPU, and CUDA when present")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", choices=["both", *PRECISIONS], default="both",
                        help="fp32 (TF32 off) and/or bf16 autocast, the same for both ops")
    parser.add_argument("--memory-of", nargs=3, metavar=("CASE", "VARIANT", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.batch, args.size, args.repeats) < 1:
        parser.error("--batch, --size and --repeats must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available; use --device cpu")
    return args


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        return report_cpu_peak(*args.memory_of, args)
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device != "cpu" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    precisions = PRECISIONS if args.precision == "both" else (args.precision,)
    config = dict(batch=args.batch, size=args.size, repeats=args.repeats, threads=torch.get_num_threads(),
                  torch=torch.__version__, precisions=list(precisions), cpu_native_bf16=cpu_has_native_bf16(),
                  load_average_at_start=os.getloadavg(),
                  cuda_device=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    print(f"batch {args.batch}, {args.size}x{args.size} images, median of {args.repeats}, "
          f"{config['threads']} CPU threads, load average {config['load_average_at_start'][0]:.1f}\n{HEADER}")
    rows = [row for device in devices for precision in precisions for row in measure(device, precision, args)]
    config["load_average_at_end"] = os.getloadavg()
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(dict(config=config, rows=rows), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

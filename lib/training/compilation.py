"""compile='auto': torch.compile a run's model where the run pays its compilation back, else train eager.

A run whose remaining training, timed eager on one batch, takes less than COMPILE_MIN_RUN_S stays eager unmeasured
(measuring would cost a compilation, tens of seconds on a CPU). A longer run compiles the model and times it on the
same batch (forward and backward; the optimizer is not compiled and costs both the same): it keeps the compiled
model when its steps are at least COMPILE_MIN_SPEEDUP times faster and the seconds they save over the remaining
steps exceed the compilation's; otherwise it trains eager, having spent one compilation (at most a few per cent of
such a run). A compilation that fails prints one line and the run trains eager. Rank 0 decides for every process.
"""
import copy
import functools
import statistics

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lib.core.devices import precision_context
from lib.core.errors import first_line
from lib.training.step_costs import timed


COMPILE_MIN_RUN_S = 600.0  # shorter remaining training is not worth a compilation's measurement
COMPILE_MIN_SPEEDUP = 1.05  # below this a compiled step is within a 2-core VM's step-to-step noise of eager
TIMED_STEPS = 3  # per side, after a warm-up step; their median


def _forward_backward(net, images, labels):
    F.cross_entropy(net(images), labels).backward()


def _median_step(step, device):
    """Median seconds of TIMED_STEPS calls of step() after one untimed warm-up call."""
    step()
    return statistics.median(timed(step, device) for _ in range(TIMED_STEPS))


def measure(model, images, labels, precision, remaining_steps):
    """What compile='auto' decides for `model` (in training mode) on one batch, in `precision`: a dict with
    'compiled' (the compiled module, or None to train eager), 'eager_s' and, when compiled and timed, 'first_s' (the
    first compiled step, compilation included), 'compiled_s' (seconds per step), 'payback_steps' (None: never), or
    'note' (why not). The model's weights, buffers and random streams are left as they were; its gradients are
    cleared. images (B, C, H, W) and labels (B,) on the model's device."""
    device = images.device
    buffers = copy.deepcopy(model.state_dict())
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), precision_context(precision, device):
        try:
            return _measure(model, images, labels, remaining_steps)
        finally:
            model.load_state_dict(buffers)
            model.zero_grad(set_to_none=True)


def _measure(model, images, labels, remaining_steps):
    device = images.device
    eager_s = _median_step(functools.partial(_forward_backward, model, images, labels), device)
    if remaining_steps * eager_s < COMPILE_MIN_RUN_S:
        return {"compiled": None, "eager_s": eager_s, "note": "a short run"}
    try:
        compiled = torch.compile(model)
        step = functools.partial(_forward_backward, compiled, images, labels)
        first_s = timed(step, device)
        compiled_s = statistics.median(timed(step, device) for _ in range(TIMED_STEPS))
    except Exception as error:  # torch.compile raises its own error types, from missing compilers to graph breaks
        print(f"torch.compile failed here ({type(error).__name__}: {first_line(error)}); training eager", flush=True)
        return {"compiled": None, "eager_s": eager_s, "note": "torch.compile failed"}
    saved = eager_s - compiled_s
    payback = (first_s - eager_s) / saved if saved > 0 else None
    pays = eager_s >= COMPILE_MIN_SPEEDUP * compiled_s and payback is not None and payback < remaining_steps
    return {"compiled": compiled if pays else None, "eager_s": eager_s, "first_s": first_s, "compiled_s": compiled_s,
            "payback_steps": payback, "note": None if pays else "does not pay back"}


def settle(model, net, batch, precision, remaining_steps, rank=0, world_size=1):
    """(net to train with, the choice as plain data for metrics.json) for compile='auto': rank 0 measures `model`
    on batch (images, labels) and prints one line when it timed a compilation; every process takes its choice
    (a collective under DDP, where `net` wraps `model` and is compiled afresh)."""
    result = {"compiled": None, "note": "measured by rank 0"}
    if rank == 0:
        result = measure(model, *batch, precision, remaining_steps)
        if "compiled_s" in result:
            print(f"compile=auto: {describe(result)}", flush=True)
    chosen = result["compiled"] is not None
    if world_size > 1:
        flag = torch.tensor([float(chosen)])
        dist.broadcast(flag, src=0)
        chosen = bool(flag.item())
    if chosen:
        net = result["compiled"] if world_size == 1 else torch.compile(net)
    return net, {**result, "compiled": chosen}


def describe(result):
    """One line on a timed choice, e.g. 'eager: the compiled step is 0.98x as fast, its compilation never pays back'."""
    choice = "eager" if result["compiled"] is None else "compiled"
    payback = ("never pays back" if result["payback_steps"] is None
               else f"pays back after {result['payback_steps']:,.0f} steps")
    speedup = result["eager_s"] / result["compiled_s"]
    return f"{choice}: the compiled step is {speedup:.2f}x as fast, its compilation {payback}"

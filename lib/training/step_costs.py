"""Step costs: wall time and peak memory of one training step, and FLOPs of one forward pass.

Every measurement runs in one stated precision (`lib.core.devices.precision_context`); side-by-side
comparisons take turns, so that a machine busy with other work slows each candidate alike.
"""
import copy
import functools
import itertools
import os
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lib.core.devices import PRECISIONS, precision_context, synchronize


def timed(step, device, clock=time.perf_counter):
    """Seconds of step() by `clock` (default: wall-clock), the device's queued work included."""
    synchronize(device)
    start = clock()
    step()
    synchronize(device)
    return clock() - start


def _training_step(model, images, labels, optimizer):
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def _step_peak_bytes(step, device):
    """Most bytes held at once while step() runs, above those held when it starts.

    CUDA: the caching allocator's statistics. CPU: the allocation and free events torch.profiler
    records (kineto's console log is silenced unless KINETO_LOG_LEVEL is set).
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    from lib.models.conv import release_workspace
    release_workspace()  # the custom convolution's reusable unfold buffer must count in the measured step
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    return max(itertools.accumulate((nbytes for _, nbytes in events), initial=0))


def measure_training_step(model, images, labels, optimizer=None, repeats=5, precision="fp32"):
    """Median wall time and peak memory of one training step of `model` on one batch, in `precision`.

    A step is zero_grad, forward, cross-entropy, backward and optimizer.step(); `optimizer` defaults to
    SGD with lr 0 (the weights stay unchanged). images (B, C, H, W) and labels (B,) must be on the
    model's device. One warm-up step (lazy allocations, optimizer state) is not counted, then
    `repeats` steps are timed and one more step's memory is recorded: peak_memory_mb is the most
    memory held at once during the step above what was held before it (parameters, optimizer state
    and the batch are held before it; activations, gradients and temporaries count).
    precision: 'fp32' (IEEE, TF32 off) or 'bf16' (autocast), see `precision_context`.
    Returns {'seconds_per_step', 'images_per_s', 'peak_memory_mb'}; the model's mode is restored.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels; pass one label per image")
    device = images.device
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    step = functools.partial(_training_step, model, images, labels, optimizer)
    was_training = model.training
    model.train()
    with precision_context(precision, device):
        step()
        times = [timed(step, device) for _ in range(repeats)]
        optimizer.zero_grad(set_to_none=True)
        peak = _step_peak_bytes(step, device)
    model.train(was_training)
    seconds = statistics.median(times)
    return {"seconds_per_step": seconds, "images_per_s": images.shape[0] / seconds, "peak_memory_mb": peak / 2**20}


def time_training_step(model, images, labels, optimizer, precision="fp32", clock=time.perf_counter):
    """Seconds (by `clock`, default wall-clock) of one training step of `model` (in training mode) on one batch
    in `precision`, after one untimed warm-up step; the optimizer updates the weights (a measurement for an
    estimate, on a throw-away model). images (B, C, H, W) and labels (B,) on the model's device."""
    step = functools.partial(_training_step, model.train(), images, labels, optimizer)
    with precision_context(precision, images.device):
        step()
        return timed(step, images.device, clock)


def compare_training_steps(models, images, labels, optimizers=None, rounds=5, repeats=3, precision="fp32"):
    """`measure_training_step` for several models side by side on one batch, all in one `precision`.

    models: {name: model}; optimizers: {name: optimizer} (missing names get the default). The models
    take turns over `rounds` rounds, so that a machine busy with other work slows each of them alike.
    Returns {name: {'seconds_per_step', 'images_per_s', 'peak_memory_mb'}}, medians over the rounds, and
    'round_seconds': the step time of each round, for `round_ratios`.
    """
    optimizers = optimizers or {}
    measured = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            measured[name].append(measure_training_step(model, images, labels, optimizers.get(name), repeats,
                                                        precision))
    return {name: {**{key: statistics.median(m[key] for m in results) for key in results[0]},
                   "round_seconds": [m["seconds_per_step"] for m in results]}
            for name, results in measured.items()}


def round_ratios(a, b):
    """a's step time over b's, two results of one `compare_training_steps` call (timed in the same rounds):
    (median, lowest, highest) over the rounds' ratios; a run of other work on the machine that slows one round
    widens the range instead of tipping the median alone."""
    ratios = [x / y for x, y in zip(a["round_seconds"], b["round_seconds"])]
    return statistics.median(ratios), min(ratios), max(ratios)


def bf16_speedup(model, images, labels, repeats=2):
    """Seconds per training step of `model` in fp32 over seconds under bf16 autocast (> 1: bf16 is faster).

    The steps (SGD, lr 0) run on a copy of the model in training mode, so the model and its BatchNorm
    statistics are left as they were; dropout draws from the global RNG (fork it to keep it). One
    warm-up step in each precision, then `repeats` rounds taking turns; the fastest step of each.
    """
    probe = copy.deepcopy(model).train()
    step = functools.partial(_training_step, probe, images, labels, torch.optim.SGD(probe.parameters(), lr=0.0))
    seconds = {precision: [] for precision in PRECISIONS}
    for round_ in range(repeats + 1):
        for precision in PRECISIONS:
            with precision_context(precision, images.device):
                took = timed(step, images.device)
            if round_:
                seconds[precision].append(took)
    return min(seconds["fp32"]) / min(seconds["bf16"])


def forward_flops(model, images):
    """FLOPs (2 per multiply-accumulate) of one forward pass of `model` over the batch `images`.

    Counted by torch.utils.flop_counter in eval mode, with scaled_dot_product_attention forced onto
    its math kernel so that attention's matmuls are counted too (fused kernels are not). Only
    convolutions and matrix multiplies count: normalisation, activations and softmax do not.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images)
    model.train(was_training)
    return counter.get_total_flops()


def backward_flops(model, images, labels, weights=True):
    """FLOPs (as `forward_flops` counts them) of one forward and backward pass of cross-entropy over the batch.

    weights=True: a training step's passes in training mode (gradients of the weights and of every
    activation but the input; the optimizer's elementwise update is not counted). weights=False: an attack
    step's passes in eval mode, the weights frozen, the gradient of the input only. The model's mode,
    requires_grad flags and .grad fields are left as they were.
    """
    was_training, flags = model.training, [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.train(weights)
    if not weights:
        model.requires_grad_(False)
    images = images.detach().requires_grad_(not weights)
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(images), labels).backward()
    finally:
        for param, requires_grad, grad in flags:
            param.requires_grad_(requires_grad)
            param.grad = grad
        model.train(was_training)
    return counter.get_total_flops()

"""A run's training precision: amp='auto' resolved once per run, to bf16 autocast where it pays, else fp32.

On a GPU with bf16 units amp='auto' is bf16. On a CPU with bf16 instructions it is bf16 when that makes this
model's training step at least AMP_MIN_SPEEDUP times faster (`lib.training.step_costs.bf16_speedup`, measured
on one batch by rank 0, whose choice every process takes). Elsewhere it is off (fp32).
"""
import torch
import torch.distributed as dist
from torch.utils.data import default_collate

from lib.core import devices
from lib.training import step_costs


AMP_MIN_SPEEDUP = 1.1  # amp="auto" on a CPU picks bf16 when a training step runs at least this much faster


def choose_amp(model, loader, transform, device, memory_format, rank=0, world_size=1):
    """('bf16' | 'off', measured bf16 speedup or None) for amp='auto'; a collective under DDP on a CPU.

    The speedup is measured on `probe_batch(loader, transform, ...)` without drawing from the random streams.
    """
    if not devices.has_native_bf16(device):
        return "off", None
    if device.type == "cuda":
        return "bf16", None
    choice, speedup = torch.zeros(1), None
    if rank == 0:
        with torch.random.fork_rng(devices=[]):
            speedup = step_costs.bf16_speedup(model, *probe_batch(loader, transform, device, memory_format))
        choice += speedup >= AMP_MIN_SPEEDUP
    if world_size > 1:
        dist.broadcast(choice, src=0)
    return ("bf16" if choice.item() else "off"), speedup


def probe_batch(loader, transform, device, memory_format):
    """The loader's first per-process batch by index (no RNG draw): images (B, C, H, W) through `transform`
    in `memory_format` on `device`, and labels (B,)."""
    images, labels = default_collate([loader.dataset[i] for i in range(loader.batch_size)])
    images = transform(images.to(device)).contiguous(memory_format=memory_format)
    return images, labels.to(device)

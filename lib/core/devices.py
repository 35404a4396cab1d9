"""Devices and processes: which device a process runs on, its torchrun group, seeds and random state,
the device's name and peak memory, and the numeric precision a measurement runs in.

Under ``torchrun --nproc-per-node N`` each process takes the GPU of its local rank (or the CPU, on gloo).
"""
import contextlib
import os
import platform
import resource
import sys

import torch
import torch.distributed as dist


PRECISIONS = ("fp32", "bf16")
AMP_CHOICES = ("auto", "bf16", "off")  # a run's `amp` setting: auto picks bf16 where it pays (lib.training.amp)
PRECISION_NAMES = {"fp32": "IEEE fp32", "bf16": "bf16 autocast"}  # as the report names them (IEEE: no TF32)


class DeviceError(RuntimeError):
    """The asked-for device cannot be used (absent, or shared by several processes); the message says what to do."""


def _launched_processes():
    """Number of processes torchrun started for this job (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def resolve_device(device="auto"):
    """'auto' -> this process's CUDA device when present, else CPU. Returns a torch.device.

    A CUDA device becomes the current one. 'cuda' (no index) means the GPU of this process's local
    rank (LOCAL_RANK, 0 outside torchrun). Under torchrun with several processes an explicit 'cuda:N'
    is an error: it would put every process on that one GPU (choose GPUs with CUDA_VISIBLE_DEVICES).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    elif _launched_processes() > 1:
        raise DeviceError(f"--device {device} under torchrun would put every process on one GPU; pass --device "
                          "cuda (each process takes the GPU of its local rank) and choose the GPUs with "
                          "CUDA_VISIBLE_DEVICES")
    if device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {device} was asked for but {torch.cuda.device_count()} CUDA GPU(s) are visible")
    torch.cuda.set_device(device)
    return device


def world():
    """(rank, world_size) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device="auto"):
    """Resolve this process's device and, when torchrun started several processes, join their group.

    The device decides the backend: CUDA -> nccl, CPU -> gloo. The GPU (of the local rank) is made
    current and bound to the group (device_id) *before* joining, so that every collective, the
    barriers of `experiments.run` included, runs on this process's own GPU. Returns the torch.device.
    """
    device = resolve_device(device)
    if _launched_processes() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return device


def in_group():
    """Whether this process is one of several in a torch.distributed group (a torchrun job)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def on_every_rank(flag, device):
    """Whether `flag` (a bool) holds on every process of the torchrun group (an all-reduce of the minimum, on
    `device` under NCCL, on the CPU under gloo): a collective, so every rank must ask; `flag` outside a group."""
    if not in_group():
        return flag
    value = torch.tensor(int(flag), device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def rank_label():
    """'rank R: ' in a torchrun job of several processes, else '' (a prefix for messages)."""
    return f"rank {world()[0]}: " if in_group() else ""


def exit_process(status):
    """End this process with exit `status` once its command is done.

    Status 0: the process group is destroyed first (every rank got there, so its clean-up cannot wait for a
    missing peer). Any other status under torchrun: the process ends at once, without clean-up (os._exit), and
    torchrun then stops every other rank within seconds; otherwise a rank waiting in a collective for this one
    would wait for the group's timeout (30 min on gloo, 10 on NCCL), and NCCL's own clean-up can hang while a
    peer is gone. Output is flushed first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if dist.is_available() and dist.is_initialized():
        if status and in_group():
            os._exit(status)
        dist.destroy_process_group()
    sys.exit(status)


def loader_workers(requested):
    """DataLoader worker processes for a request of `requested`: at most this process's share of the CPU cores it
    may run on, the cores divided by the processes torchrun started on this node (LOCAL_WORLD_SIZE), and at least
    one when any was requested (more workers than cores only contend with each other and with the training step)."""
    share = len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return min(requested, max(1, share))


def seed_everything(seed):
    """Seed torch (CPU and CUDA) so a run is repeatable."""
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state(device):
    """This process's random state: the CPU generator's and, on a GPU, its own device's generator's."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8)
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def gather_rng_states(device, rank=0, world_size=1):
    """Every process's `rng_state`, indexed by rank, on rank 0 (None elsewhere); a collective under DDP."""
    mine = rng_state(device)
    if world_size == 1:
        return [mine]
    states = [None] * world_size if rank == 0 else None
    dist.gather_object(mine, states, dst=0)
    return states


def set_rng_state(state, device):
    """Restore a state from `rng_state` (CPU tensors) on this process's device."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state["cuda"].numel():
        torch.cuda.set_rng_state(state["cuda"], device)


def device_name(device):
    """The GPU's name, or 'cpu (<processor>, <N> threads)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_memory_mb(device):
    """Peak memory of this process in MiB: CUDA allocator peak on a GPU, max resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_has_native_bf16():
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); without them bf16 is emulated and slow."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def has_native_bf16(device):
    """Whether `device` computes in bf16 natively: a GPU with bf16 units, or a CPU with bf16 instructions."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return cpu_has_native_bf16()


def synchronize(device):
    """Wait for the device's queued work, so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def precision_context(precision, device):
    """Run a measurement in one stated precision, the same for every op compared.

    'fp32': IEEE fp32 throughout (TF32 off for cuDNN convolutions and RNNs and for CUDA matmuls, which otherwise
    differ: cuDNN uses TF32 by default, matmuls do not). 'bf16': bf16 autocast on `device` (weights stay
    fp32; ops autocast keeps in fp32 run in IEEE fp32). The TF32 settings are restored on exit.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    saved = _tf32_settings()
    _set_tf32_settings(False, "ieee", "ieee", "ieee")
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        _set_tf32_settings(*saved)


def _tf32_settings():
    """(cuDNN's legacy allow_tf32 flag, or None where torch refuses to read it, the fp32_precision of cuDNN
    convolutions, of cuDNN RNNs and of CUDA matmuls)."""
    cudnn = torch.backends.cudnn
    try:
        legacy = cudnn.allow_tf32
    except RuntimeError:  # the caller set cuDNN's convolutions and RNNs apart: torch refuses to read the flag
        legacy = None
    return legacy, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision


def _set_tf32_settings(legacy, conv, rnn, matmul):
    """Set what `_tf32_settings` reads. torch (2.14) reads cuDNN's allow_tf32 only while it agrees with both of
    cuDNN's fp32_precision settings, and setting the flag resets them, so it is set first (unless None)."""
    if legacy is not None:
        torch.backends.cudnn.allow_tf32 = legacy
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision = conv, rnn
    torch.backends.cuda.matmul.fp32_precision = matmul

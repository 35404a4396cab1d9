"""Putting a model on its device for training: memory layout, SyncBatchNorm and DDP under torchrun, torch.compile,
and cuDNN's choice of convolution algorithms."""
import torch
from torch import nn


SYNC_BATCHNORM_DEVICES = ("cuda",)  # device types with PyTorch's SyncBatchNorm kernels


def place_model(model, cfg, device, memory_format, world_size=1):
    """(model, net) for training on `device`: `model` holds the weights (state_dict, optimizer, evaluation); `net`
    is what training steps call.

    Under torchrun (world_size > 1) BatchNorm layers become SyncBatchNorm on a GPU, so that they normalise over
    the global batch whatever the number of processes (the CPU has no SyncBatchNorm kernels: its BatchNorm stays
    per process), and `net` is DistributedDataParallel. cfg['compile'] True wraps `net` in torch.compile ('auto' is
    settled later, by the trainer: lib.training.compilation). On a GPU
    cuDNN benchmarks its convolution algorithms once per input shape (the shapes of a run are fixed).
    """
    if world_size > 1 and device.type in SYNC_BATCHNORM_DEVICES:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=memory_format)
    net = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    if cfg.get("compile") is True:
        net = torch.compile(net)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model, net

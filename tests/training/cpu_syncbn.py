"""Test-only CPU kernels for PyTorch's SyncBatchNorm, which has them on GPUs only: with `enable()` the real
nn.SyncBatchNorm code (its forward and backward, its all_gather and all_reduce) runs on CPU tensors over gloo.

Each kernel computes what its CUDA counterpart computes, from the per-channel statistics over every dimension but
the channels (dimension 1); lib.training.placement is told that CPU devices have them.
"""
import torch

from lib.training import placement


def _dims(x):
    return [d for d in range(x.dim()) if d != 1]


def _channel(v, x):
    """(C,) -> broadcastable against x (N, C, ...)."""
    return v.view(1, -1, *([1] * (x.dim() - 2)))


def stats(x, eps):
    return x.mean(_dims(x)), (x.var(_dims(x), unbiased=False) + eps).rsqrt()


def gather_stats_with_counts(x, mean_all, invstd_all, running_mean, running_var, momentum, eps, counts):
    counts = counts.to(mean_all.dtype)[:, None]
    total = counts.sum()
    mean = (counts * mean_all).sum(0) / total
    var = (counts * (invstd_all.pow(-2) - eps + mean_all ** 2)).sum(0) / total - mean ** 2
    if running_mean is not None:
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * total / (total - 1))
    return mean, (var + eps).rsqrt()


def elemt(x, weight, bias, mean, invstd, eps):
    out = (x - _channel(mean, x)) * _channel(invstd, x)
    return out * _channel(weight, x) + _channel(bias, x) if weight is not None else out


def backward_reduce(grad, x, mean, invstd, weight, input_g, weight_g, bias_g):
    sum_dy = grad.sum(_dims(x))
    sum_dy_xmu = (grad * (x - _channel(mean, x))).sum(_dims(x))
    return sum_dy, sum_dy_xmu, sum_dy_xmu * invstd, sum_dy


def backward_elemt(grad, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count):
    n = count.sum().to(x.dtype)
    xmu = x - _channel(mean, x)
    scale = invstd * (weight if weight is not None else 1)
    return (grad - _channel(sum_dy / n, x) - xmu * _channel(invstd ** 2 * sum_dy_xmu / n, x)) * _channel(scale, x)


LIBRARY = None

KERNELS = {"batch_norm_stats": stats, "batch_norm_gather_stats_with_counts": gather_stats_with_counts,
           "batch_norm_elemt": elemt, "batch_norm_backward_reduce": backward_reduce,
           "batch_norm_backward_elemt": backward_elemt}


def enable():
    """Register the kernels for CPU tensors; let nn.SyncBatchNorm accept CPU input (it checks the device type
    against the private-use backend's name, which reads 'cpu' during its forward) and DDP a CPU module holding
    it; let lib.training.placement convert on CPUs."""
    global LIBRARY
    LIBRARY = torch.library.Library("aten", "IMPL")  # the registrations last as long as this object
    for name, kernel in KERNELS.items():
        LIBRARY.impl(name, kernel, "CPU")
    check_forward = torch.nn.SyncBatchNorm.forward

    def forward(self, input):  # the device check reads the private-use backend's name: "cpu" during the call
        name = torch._C._get_privateuse1_backend_name
        torch._C._get_privateuse1_backend_name = lambda: "cpu"
        try:
            return check_forward(self, input)
        finally:
            torch._C._get_privateuse1_backend_name = name
    torch.nn.SyncBatchNorm.forward = forward
    torch.nn.parallel.DistributedDataParallel._passing_sync_batchnorm_handle = lambda self, module: None
    placement.SYNC_BATCHNORM_DEVICES = ("cuda", "cpu")

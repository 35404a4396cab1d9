"""Custom 2-D convolution: unfold + one matrix multiply, hand-written backward with fold.

The layout is channels-last throughout. ``_unfold_rows`` turns an input (B, C, H, W) into
one row per output pixel, (B*Ho*Wo, kh*kw*C), so the forward pass is a single GEMM

    rows (B*Ho*Wo, kh*kw*C) @ weight matrix.T (kh*kw*C, O) -> (B*Ho*Wo, O)

whose result already *is* the output (B, O, Ho, Wo) in channels-last memory: no batched
product, no sum over the batch, no transpose copy, and the next layer reads it without a copy.
A 1x1, stride-1, unpadded kernel needs no unfold at all: its rows are a view of the input.

The backward pass computes every gradient with matrix multiplies and a fold (the adjoint
of unfold, which sums each row entry back onto the pixel it was read from); it never calls
torch's convolution ops. Only the input and the weight are saved: the rows are recomputed
in backward, which costs one copy but keeps the large unfolded tensor out of the graph.
On the CPU the rows live in a per-thread scratch buffer reused by every layer and step
(see ``_scratch``); ``release_workspace`` frees it.

Mixed precision follows ``nn.Conv2d``: under ``torch.autocast`` on the input's device type the
input, weight and bias are cast to the autocast dtype (bf16 or fp16) and forward and backward run
entirely in it, with autocast switched off inside (``custom_conv2d``). Without autocast every
tensor keeps its dtype, so fp32 in gives fp32 arithmetic out.
"""
import math
import threading

import torch
from torch import nn
from torch.nn import init


def _positive_int(value, name):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _pair(value, name, minimum):
    """An int or a pair of ints, each >= minimum -> (int, int)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def output_size(size, kernel, stride, padding):
    """Spatial output size (Ho, Wo) of a convolution over an input of size (H, W)."""
    out = tuple((s + 2 * p - k) // st + 1 for s, k, st, p in zip(size, kernel, stride, padding))
    if min(out) < 1:
        raise ValueError(f"kernel {kernel} is larger than the padded input {tuple(size)} "
                         f"(padding {padding}); use a smaller kernel or a larger input")
    return out


def _is_pointwise(kernel, stride, padding):
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


_workspace = threading.local()


def _scratch(slot, shape, like):
    """Uninitialised (shape) buffer of like's dtype/device, reused across calls on the CPU.

    A fresh large CPU allocation is page-faulted and zeroed by the kernel on first touch,
    which costs more than the unfold copy itself; one reusable buffer per slot avoids that
    (the CUDA caching allocator already does it there). Valid until the next call with the
    same slot in the same thread.
    """
    if like.device.type != "cpu":
        return like.new_empty(shape)
    buffers = _workspace.__dict__.setdefault("buffers", {})
    key, numel = (slot, like.dtype), math.prod(shape)
    if key not in buffers or buffers[key].numel() < numel:
        buffers.pop(key, None)  # free the old buffer before allocating the larger one
        buffers[key] = like.new_empty(numel)
    return buffers[key][:numel].view(shape)


def release_workspace():
    """Free this thread's CPU scratch buffers (they are allocated again on the next use).

    They hold about one unfolded input of the largest layer between steps; a memory
    measurement that only counts allocations made during a step should call this first.
    """
    _workspace.__dict__.pop("buffers", None)


def _unfold_rows(x, kernel, stride, padding):
    """Receptive field of every output pixel as one row.

    x: (B, C, H, W), any memory format. Returns (B*Ho*Wo, kh*kw*C), rows ordered (b, ho, wo),
    columns ordered (i, j, c) for kernel offset (i, j) and input channel c. The result is a
    view of x (1x1 kernels) or a scratch buffer valid until the next unfold.
    """
    batch, channels, height, width = x.shape
    if _is_pointwise(kernel, stride, padding):
        return x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when x is channels-last
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out_h, out_w = output_size((height, width), kernel, stride, padding)
    padded = _scratch("padded", (batch, height + 2 * ph, width + 2 * pw, channels), x).zero_()
    padded[:, ph:ph + height, pw:pw + width] = x.permute(0, 2, 3, 1)
    windows = padded.unfold(1, kh, sh).unfold(2, kw, sw)  # (B, Ho, Wo, C, kh, kw) view
    rows = _scratch("rows", (batch, out_h, out_w, kh, kw, channels), x)
    rows.copy_(windows.permute(0, 1, 2, 4, 5, 3))
    return rows.view(-1, kh * kw * channels)


def _fold_rows(rows, input_shape, kernel, stride, padding):
    """Adjoint of ``_unfold_rows``: add every row entry back onto the input pixel it came from.

    rows: (B*Ho*Wo, kh*kw*C). Returns a new (B, C, H, W) tensor for input_shape (B, C, H, W),
    channels-last. Entries that came from the zero padding are dropped.
    """
    batch, channels, height, width = input_shape
    kh, kw = kernel
    out_h, out_w = output_size((height, width), kernel, stride, padding)
    patches = rows.view(batch, out_h, out_w, kh, kw, channels)
    folded = rows.new_zeros(batch, height, width, channels)
    for i in range(kh):
        rows_i, pixels_i = _overlap(i, stride[0], padding[0], height, out_h)
        for j in range(kw):
            cols_j, pixels_j = _overlap(j, stride[1], padding[1], width, out_w)
            folded[:, pixels_i, pixels_j] += patches[:, rows_i, cols_j, i, j]
    return folded.permute(0, 3, 1, 2)


def _overlap(offset, stride, padding, size, out_size):
    """Slices (outputs, inputs) along one axis: output o reads input o*stride + offset - padding.

    Only the outputs whose input lies inside [0, size) are kept.
    """
    first = max(0, -((offset - padding) // stride))
    count = min(out_size, (size - 1 + padding - offset) // stride + 1) - first
    if count <= 0:
        return slice(0, 0), slice(0, 0)
    start = first * stride + offset - padding
    return slice(first, first + count), slice(start, start + stride * (count - 1) + 1, stride)


def _weight_matrix(weight):
    """(O, C, kh, kw) -> (O, kh*kw*C), columns in the order of ``_unfold_rows``."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _weight_from_matrix(matrix, shape):
    """Inverse of ``_weight_matrix``: (O, kh*kw*C) -> contiguous (O, C, kh, kw)."""
    out_channels, in_channels, kh, kw = shape
    return matrix.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2).contiguous()


class UnfoldConv2dFunction(torch.autograd.Function):
    """conv2d(input, weight, bias, stride, padding) as unfold + GEMM; backward by GEMMs + fold.

    input (B, C, H, W), weight (O, C, kh, kw), bias (O,) or None, stride and padding pairs of
    ints. Returns (B, O, Ho, Wo) in channels-last memory format.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding):
        kernel = tuple(weight.shape[2:])
        out_h, out_w = output_size(input.shape[2:], kernel, stride, padding)
        rows = _unfold_rows(input, kernel, stride, padding)
        output = torch.empty((input.shape[0], weight.shape[0], out_h, out_w), dtype=input.dtype,
                             device=input.device, memory_format=torch.channels_last)
        output_rows = output.permute(0, 2, 3, 1).view(-1, weight.shape[0])  # writes into output
        if bias is None:
            torch.mm(rows, _weight_matrix(weight).t(), out=output_rows)
        else:
            torch.addmm(bias, rows, _weight_matrix(weight).t(), out=output_rows)
        ctx.save_for_backward(input, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        kernel, stride, padding = tuple(weight.shape[2:]), ctx.stride, ctx.padding
        grad_rows = grad_output.permute(0, 2, 3, 1).reshape(-1, weight.shape[0])  # (B*Ho*Wo, O)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:  # before grad_input: both use the "rows" scratch buffer
            rows = _unfold_rows(input, kernel, stride, padding)
            grad_weight = _weight_from_matrix(grad_rows.t() @ rows, weight.shape)
        if ctx.needs_input_grad[0]:
            grad_input = _input_grad(grad_rows, _weight_matrix(weight), input.shape, kernel,
                                     stride, padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_input, grad_weight, grad_bias, None, None


def custom_conv2d(input, weight, bias, stride, padding):
    """``UnfoldConv2dFunction`` with ``F.conv2d``'s autocast behaviour.

    Under autocast on input's device type (CPU or CUDA), input, weight and bias are cast to the
    autocast dtype read at call time, as autocast does for ``F.conv2d``, and the op runs with
    autocast disabled: its matrix multiplies (which write into preallocated outputs, where
    autocast would not cast) and its backward all run in that one dtype, and the output has it.
    This is what ``torch.amp.custom_fwd(cast_inputs=...)`` does for a dtype fixed in advance.
    Gradients flow back through the casts, so fp32 parameters get fp32 gradients.
    """
    device_type = input.device.type
    if not torch.is_autocast_enabled(device_type):
        return UnfoldConv2dFunction.apply(input, weight, bias, stride, padding)
    dtype = torch.get_autocast_dtype(device_type)
    with torch.autocast(device_type, enabled=False):
        return UnfoldConv2dFunction.apply(input.to(dtype), weight.to(dtype),
                                          None if bias is None else bias.to(dtype), stride, padding)


def _input_grad(grad_rows, weight_matrix, input_shape, kernel, stride, padding):
    """grad_rows (B*Ho*Wo, O) @ weight_matrix (O, kh*kw*C), folded back to (B, C, H, W)."""
    batch, channels, height, width = input_shape
    if _is_pointwise(kernel, stride, padding):
        return (grad_rows @ weight_matrix).view(batch, height, width, channels).permute(0, 3, 1, 2)
    grad_unfolded = _scratch("rows", (grad_rows.shape[0], weight_matrix.shape[1]), grad_rows)
    torch.mm(grad_rows, weight_matrix, out=grad_unfolded)
    return _fold_rows(grad_unfolded, input_shape, kernel, stride, padding)


class CustomConv2d(nn.Module):
    """Drop-in for ``nn.Conv2d`` (same constructor, same default initialisation).

    Supports int or pair kernel_size/stride/padding and bias; dilation=1, groups=1 and
    padding_mode='zeros' only (anything else raises NotImplementedError). Input (B, C, H, W)
    or (C, H, W); output (B, O, Ho, Wo) in channels-last memory format.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        if isinstance(padding, str):
            raise NotImplementedError(f"CustomConv2d takes padding as an int or a pair of ints, "
                                      f"not {padding!r}; use nn.Conv2d for string padding")
        if _pair(dilation, "dilation", 1) != (1, 1):
            raise NotImplementedError(f"CustomConv2d supports dilation=1 only, got {dilation!r}; "
                                      "use nn.Conv2d for dilated convolution")
        if groups != 1:
            raise NotImplementedError(f"CustomConv2d supports groups=1 only, got {groups!r}; "
                                      "use nn.Conv2d for grouped convolution")
        if padding_mode != "zeros":
            raise NotImplementedError(f"CustomConv2d supports padding_mode='zeros' only, got "
                                      f"{padding_mode!r}; use nn.Conv2d for other padding modes")
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """nn.Conv2d's default: kaiming-uniform(a=sqrt(5)) weight, uniform(+-1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if x.dim() == 3:
            return self(x.unsqueeze(0)).squeeze(0)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"CustomConv2d expects input (B, {self.in_channels}, H, W) or "
                             f"({self.in_channels}, H, W), got shape {tuple(x.shape)}")
        return custom_conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")

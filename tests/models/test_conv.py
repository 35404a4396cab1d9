"""Tests for lib.models.conv: the unfold + matrix-multiply convolution and its hand-written backward."""
import itertools
import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from lib.models.conv import CustomConv2d, UnfoldConv2dFunction, _fold_rows, _unfold_rows, release_workspace


def conv(x, weight, bias, stride, padding):
    return UnfoldConv2dFunction.apply(x, weight, bias, stride, padding)


def random_case(kernel, size, channels=(2, 3), batch=1, bias=True, dtype=torch.float64):
    torch.manual_seed(sum(kernel) + sum(size))
    x = torch.randn(batch, channels[0], *size, dtype=dtype, requires_grad=True)
    weight = torch.randn(channels[1], channels[0], *kernel, dtype=dtype, requires_grad=True)
    b = torch.randn(channels[1], dtype=dtype, requires_grad=True) if bias else None
    return x, weight, b


# (kernel, stride, padding, input size): kernel sizes 1-7, non-square kernels and inputs
CASES = [((k, k), (s, s), (p, p), (9, 7)) for k, s, p in itertools.product(range(1, 8), (1, 2, 3), (0, 1, 3))
         if k <= 7 + 2 * p] + [
    ((1, 3), (1, 2), (0, 1), (5, 8)), ((3, 1), (2, 1), (1, 0), (8, 5)),
    ((2, 5), (3, 1), (2, 0), (6, 11)), ((7, 7), (2, 2), (3, 3), (12, 10)),
    ((7, 7), (4, 3), (3, 3), (1, 2)), ((5, 5), (1, 1), (2, 2), (1, 1)),  # some offsets see only padding
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel,stride,padding,size", CASES[::5])
def test_forward_matches_f_conv2d(dtype, kernel, stride, padding, size):
    x, weight, bias = random_case(kernel, size, channels=(4, 5), batch=3, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for b in (bias, None):
        torch.testing.assert_close(conv(x, weight, b, stride, padding), F.conv2d(x, weight, b, stride, padding),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel,stride,padding,size", CASES)
def test_gradcheck(kernel, stride, padding, size, bias):
    x, weight, b = random_case(kernel, size, bias=bias)
    inputs = (x, weight) + ((b,) if bias else ())
    assert torch.autograd.gradcheck(lambda x, w, *b: conv(x, w, b[0] if b else None, stride, padding),
                                    inputs, fast_mode=True)


@pytest.mark.parametrize("kernel,stride,padding,size", [((3, 3), (1, 1), (1, 1), (5, 4)),
                                                        ((2, 3), (2, 1), (1, 2), (5, 6))])
def test_gradcheck_full_jacobian(kernel, stride, padding, size):
    x, weight, b = random_case(kernel, size, channels=(2, 2))
    assert torch.autograd.gradcheck(lambda x, w, b: conv(x, w, b, stride, padding), (x, weight, b))


def test_gradients_match_native_on_a_realistic_layer_in_float32():
    x, weight, bias = random_case((3, 3), (12, 10), channels=(16, 24), batch=4, dtype=torch.float32)
    grad = torch.randn(4, 24, 12, 10)
    ours = torch.autograd.grad(conv(x, weight, bias, (1, 1), (1, 1)), (x, weight, bias), grad)
    native = torch.autograd.grad(F.conv2d(x, weight, bias, 1, 1), (x, weight, bias), grad)
    for a, b in zip(ours, native):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_only_requested_gradients_are_computed():
    x, weight, bias = random_case((3, 3), (6, 6))
    x.requires_grad_(False)
    out = conv(x, weight, bias, (1, 1), (1, 1))
    out.sum().backward()
    assert x.grad is None and weight.grad is not None and bias.grad is not None


def test_no_torch_convolution_op_runs():
    x, weight, bias = random_case((3, 3), (8, 8), dtype=torch.float32)
    with torch.profiler.profile() as prof:
        conv(x, weight, bias, (2, 2), (1, 1)).sum().backward()
    names = {event.key for event in prof.key_averages()}
    assert "aten::mm" in names or "aten::addmm" in names
    assert not [name for name in names if "conv" in name.lower() and "UnfoldConv2dFunction" not in name]


@pytest.mark.parametrize("kernel,stride,padding", [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 2)),
                                                   ((1, 1), (1, 1), (0, 0))])
def test_unfold_and_fold_agree_with_torch_up_to_column_order(kernel, stride, padding):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    reference = F.unfold(x, kernel, padding=padding, stride=stride)  # (B, C*kh*kw, L), columns (c, i, j)
    rows = _unfold_rows(x, kernel, stride, padding).view(2, -1, *kernel, 3)  # columns (i, j, c)
    torch.testing.assert_close(rows.permute(0, 4, 2, 3, 1).reshape(reference.shape), reference)
    folded = _fold_rows(rows.reshape(-1, 3 * kernel[0] * kernel[1]), x.shape, kernel, stride, padding)
    torch.testing.assert_close(folded, F.fold(reference, x.shape[2:], kernel, padding=padding, stride=stride))


def test_module_is_a_drop_in_for_nn_conv2d():
    native = nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2))
    custom = CustomConv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2))
    custom.load_state_dict(native.state_dict())
    x = torch.rand(2, 3, 11, 9)
    torch.testing.assert_close(custom(x), native(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(custom(x[0]), native(x[0]), rtol=1e-5, atol=1e-5)  # unbatched input
    assert CustomConv2d(3, 8, 1, bias=False).bias is None


def test_default_initialisation_is_nn_conv2d_s():
    torch.manual_seed(0)
    native = nn.Conv2d(64, 128, 3)
    torch.manual_seed(0)
    custom = CustomConv2d(64, 128, 3)
    assert torch.equal(custom.weight, native.weight) and torch.equal(custom.bias, native.bias)
    bound = 1 / math.sqrt(64 * 9)  # kaiming_uniform(a=sqrt(5)) and the bias share this bound
    assert custom.weight.abs().max() <= bound and custom.bias.abs().max() <= bound
    assert custom.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("kwargs,error", [
    (dict(dilation=2), NotImplementedError), (dict(groups=3), NotImplementedError),
    (dict(padding_mode="reflect"), NotImplementedError), (dict(padding="same"), NotImplementedError),
    (dict(kernel_size=0), ValueError), (dict(stride=(1, 0)), ValueError), (dict(padding=-1), ValueError),
    (dict(kernel_size=(1, 2, 3)), TypeError), (dict(kernel_size=2.5), TypeError), (dict(in_channels=0), ValueError),
])
def test_unsupported_or_invalid_options_are_rejected(kwargs, error):
    args = dict(in_channels=3, out_channels=6, kernel_size=3) | kwargs
    with pytest.raises(error, match=next(iter(kwargs))):
        CustomConv2d(**args)


def test_bad_inputs_are_rejected_with_the_expected_shape():
    layer = CustomConv2d(3, 4, 5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        layer(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer(torch.rand(1, 3, 4, 8))


def test_scratch_buffers_are_reused_and_released():
    layer = CustomConv2d(3, 4, 3, padding=1)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    first = layer(x)
    second = layer(x * 2)  # reuses the scratch buffer the first call unfolded into
    torch.testing.assert_close(second - layer.bias.view(1, -1, 1, 1), 2 * (first - layer.bias.view(1, -1, 1, 1)))
    release_workspace()
    (first.sum() + second.sum()).backward()
    native = torch.autograd.grad(F.conv2d(x, layer.weight, layer.bias, 1, 1).sum(), x)[0]
    torch.testing.assert_close(x.grad, 3 * native, rtol=1e-5, atol=1e-5)


AUTOCAST_CASES = {"3x3": dict(kernel_size=3, padding=1), "strided": dict(kernel_size=3, stride=2, padding=1),
                  "1x1": dict(kernel_size=1)}


NEEDS_CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("case", AUTOCAST_CASES)
@pytest.mark.parametrize("device,dtype,input_dtype", [
    ("cpu", torch.bfloat16, torch.float32), ("cpu", torch.bfloat16, torch.bfloat16),
    pytest.param("cuda", torch.bfloat16, torch.float32, marks=NEEDS_CUDA),
    pytest.param("cuda", torch.float16, torch.float16, marks=NEEDS_CUDA)])
def test_autocast_runs_in_the_autocast_dtype_like_nn_conv2d(case, device, dtype, input_dtype):
    torch.manual_seed(0)
    native = nn.Conv2d(16, 8, **AUTOCAST_CASES[case]).to(device)
    custom = CustomConv2d(16, 8, **AUTOCAST_CASES[case]).to(device)
    custom.load_state_dict(native.state_dict())
    x = torch.randn(2, 16, 10, 10, dtype=input_dtype, device=device)
    x_native, x_custom = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast(device, dtype=dtype):
        out_native, out_custom = native(x_native), custom(x_custom)
    assert out_custom.dtype == out_native.dtype == dtype
    torch.testing.assert_close(out_custom.float(), out_native.float(), rtol=2e-2, atol=2e-2)
    grad = torch.randn_like(out_native)
    out_native.backward(grad)
    out_custom.backward(grad)
    assert custom.weight.grad.dtype == torch.float32 and x_custom.grad.dtype == input_dtype
    for ours, theirs in [(x_custom.grad, x_native.grad), (custom.weight.grad, native.weight.grad),
                         (custom.bias.grad, native.bias.grad)]:
        torch.testing.assert_close(ours.float(), theirs.float(), rtol=3e-2, atol=3e-2 * theirs.abs().max().item())


def test_without_autocast_the_dtype_is_kept():
    x, weight, bias = random_case((3, 3), (6, 6), dtype=torch.float64)
    assert conv(x, weight, bias, (1, 1), (1, 1)).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert CustomConv2d(2, 3, 3)(torch.rand(1, 2, 5, 5)).dtype == torch.float32

"""CUDA-only checks (marker `cuda`: skipped without a GPU; `make gpu-check` runs them on one)."""
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from lib import experiments
from lib.models.conv import CustomConv2d


pytestmark = pytest.mark.cuda


def test_model_trains_a_step_on_cuda_under_bf16_autocast():
    cfg = experiments.config("resnet18", "smoke", model_kwargs={"pretrained": False})
    model = experiments.build_model(cfg).cuda().to(memory_format=torch.channels_last)
    images = torch.rand(8, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (8,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(images)
    assert logits.dtype == torch.bfloat16 and logits.shape == (8, 100)
    F.cross_entropy(logits.float(), labels).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (5, 2, 2)])
def test_custom_conv_matches_nn_conv2d_on_cuda(kernel, stride, padding):
    """float32 custom convolution against nn.Conv2d in float64 (no TF32 rounding in the reference)."""
    torch.manual_seed(0)
    native = nn.Conv2d(16, 32, kernel, stride, padding).cuda().double()
    custom = CustomConv2d(16, 32, kernel, stride, padding).cuda()
    custom.load_state_dict({k: v.float() for k, v in native.state_dict().items()})
    x = torch.randn(4, 16, 33, 33, device="cuda", dtype=torch.float64, requires_grad=True)
    x32 = x.detach().float().requires_grad_()
    expected, out = native(x), custom(x32)
    assert out.is_cuda and torch.allclose(out.double(), expected, atol=1e-4, rtol=1e-4)
    grad = torch.randn_like(expected)
    native_grads = torch.autograd.grad(expected, [x, native.weight, native.bias], grad)
    custom_grads = torch.autograd.grad(out, [x32, custom.weight, custom.bias], grad.float())
    for mine, reference in zip(custom_grads, native_grads):
        assert torch.allclose(mine.double(), reference, atol=1e-3, rtol=1e-3)


def test_smoke_run_trains_on_cuda(tmp_path):
    run = experiments.run("simplenet", "smoke", device="cuda", results_dir=tmp_path, progress=False)
    assert run.finished and torch.cuda.get_device_name() in run.metrics["provenance"]["device"]

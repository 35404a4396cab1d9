"""lib/training/step_costs.py: time and peak memory of a training step, forward FLOPs, the bf16 speed-up."""
import pytest
import torch
from torch import nn

from lib.core.devices import precision_context
from lib.training import step_costs as stepcost
from lib.training.step_costs import compare_training_steps, forward_flops, measure_training_step, round_ratios


def mlp(width=512):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, width), nn.ReLU(), nn.Linear(width, 10))


def batch(n):
    return torch.rand(n, 256), torch.randint(0, 10, (n,))


def test_measure_reports_time_and_memory_and_leaves_the_model_as_it_was():
    model = mlp().eval()
    before = [p.detach().clone() for p in model.parameters()]
    result = measure_training_step(model, *batch(32), repeats=2)
    assert set(result) == {"seconds_per_step", "images_per_s", "peak_memory_mb"}
    assert result["seconds_per_step"] > 0
    assert result["images_per_s"] == pytest.approx(32 / result["seconds_per_step"])
    assert not model.training  # mode restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # default optimizer: lr 0


def test_peak_memory_counts_gradients_and_grows_with_the_batch():
    model = mlp(width=1024)
    gradient_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    small = measure_training_step(model, *batch(16), repeats=1)["peak_memory_mb"]
    large = measure_training_step(model, *batch(1024), repeats=1)["peak_memory_mb"]
    hidden_mb = 1024 * 1024 * 4 / 2**20  # one (batch, width) activation of the large batch
    assert small >= gradient_mb
    assert large - small >= hidden_mb


def test_measure_uses_the_given_optimizer():
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    measure_training_step(model, *batch(8), torch.optim.SGD(model.parameters(), lr=0.1), repeats=1)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_compare_measures_each_model_and_steps_each_optimizer():
    small, large = mlp(width=64), mlp(width=2048)
    before = [p.detach().clone() for p in large.parameters()]
    optimizers = {"large": torch.optim.SGD(large.parameters(), lr=0.1)}
    result = compare_training_steps({"small": small, "large": large}, *batch(256), optimizers, rounds=2, repeats=1)
    assert list(result) == ["small", "large"]
    assert result["large"]["peak_memory_mb"] > result["small"]["peak_memory_mb"]
    assert result["large"]["seconds_per_step"] > result["small"]["seconds_per_step"]
    assert not all(torch.equal(a, b) for a, b in zip(before, large.parameters()))
    assert len(result["small"]["round_seconds"]) == len(result["large"]["round_seconds"]) == 2


def test_round_ratios_pair_the_rounds():
    a, b = {"round_seconds": [2.0, 3.0, 9.0]}, {"round_seconds": [1.0, 2.0, 3.0]}
    assert round_ratios(a, b) == (2.0, 1.5, 3.0)  # ratios 2, 1.5, 3: median, lowest, highest


def test_measure_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeats"):
        measure_training_step(mlp(), *batch(4), repeats=0)
    with pytest.raises(ValueError, match="one label per image"):
        measure_training_step(mlp(), torch.rand(4, 256), torch.zeros(3, dtype=torch.long))


def test_forward_flops_of_linear_and_conv_layers():
    assert forward_flops(nn.Linear(256, 10), torch.rand(5, 256)) == 2 * 5 * 256 * 10
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert forward_flops(conv, torch.rand(2, 3, 6, 6)) == 2 * 2 * 8 * 6 * 6 * 3 * 3 * 3
    model = mlp().train()
    forward_flops(model, torch.rand(1, 256))
    assert model.training  # mode restored


class Attend(nn.Module):
    """Parameter-free self-attention of a (B, heads, N, d) tensor onto itself."""

    def forward(self, x):
        return nn.functional.scaled_dot_product_attention(x, x, x)


def test_forward_flops_counts_the_matmuls_of_fused_attention():
    x = torch.rand(3, 2, 10, 8)  # B, heads, N, d
    assert forward_flops(Attend(), x) == 2 * (2 * 3 * 2 * 10 * 10 * 8)  # QK^T and AV


def tf32_settings():
    """(cuDNN conv, cuDNN RNN, CUDA matmul fp32_precision, cuDNN's allow_tf32 as torch reads it)."""
    cudnn = torch.backends.cudnn
    return (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision,
            cudnn.allow_tf32)


def test_precision_context_turns_tf32_off_and_restores_it():
    before = tf32_settings()  # reading allow_tf32 raises where conv and rnn disagree with it (torch 2.14)
    for precision, autocast in (("fp32", False), ("bf16", True)):
        with precision_context(precision, torch.device("cpu")):
            assert tf32_settings() == ("ieee", "ieee", "ieee", False)
            assert torch.is_autocast_enabled("cpu") == autocast
        assert tf32_settings() == before
    with pytest.raises(ValueError, match="precision must be one of"):
        measure_training_step(mlp(), *batch(4), precision="fp16")


def test_bf16_speedup_leaves_model_and_random_state_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(144, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with torch.random.fork_rng(devices=[]):
        speedup = stepcost.bf16_speedup(model, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]), repeats=1)
    assert speedup > 0 and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

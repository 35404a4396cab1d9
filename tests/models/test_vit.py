"""Tests for lib.models.vit: windows, attention, drop path, SimpleViT shapes/training, attention FLOPs."""
import math

import pytest
import torch
from torch import nn

from lib.models.vit import (
    Attention, DropPath, SimpleViT, TransformerBlock, attend, attention_flops, token_grid, window_partition,
    window_unpartition
)
from lib.training.step_costs import forward_flops


def small_vit(**overrides):
    """A SimpleViT small enough for CPU tests; keyword arguments override the defaults."""
    config = dict(img_size=32, num_classes=10, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                  window_size=2, window_block_indexes=(0,))
    return SimpleViT(**{**config, **overrides})


@pytest.fixture(scope="module")
def reference_vit():
    """The reference SimpleViT (blocks 0 and 2 windowed); built once, it takes a few seconds."""
    return SimpleViT()


@pytest.fixture(scope="module")
def global_vit():
    """The reference SimpleViT with global attention in every block."""
    return SimpleViT(window_block_indexes=())


@pytest.mark.parametrize("height,width,window", [(8, 8, 4), (7, 5, 4), (6, 6, 4), (3, 9, 2), (2, 2, 4)])
def test_window_round_trip(height, width, window):
    x = torch.randn(2, height, width, 3)
    windows, (hp, wp) = window_partition(x, window)
    assert (hp, wp) == (math.ceil(height / window) * window, math.ceil(width / window) * window)
    assert windows.shape == (2 * (hp // window) * (wp // window), window, window, 3)
    assert torch.equal(window_unpartition(windows, window, (hp, wp), (height, width)), x)


def test_window_partition_pads_with_zeros_and_keeps_order():
    x = torch.arange(1, 1 + 3 * 3, dtype=torch.float).view(1, 3, 3, 1)
    windows, pad_hw = window_partition(x, 2)
    assert pad_hw == (4, 4)
    assert windows[0, ..., 0].tolist() == [[1, 2], [4, 5]]  # top-left window
    assert windows[1, ..., 0].tolist() == [[3, 0], [6, 0]]  # top-right window, padded column
    assert windows[3, ..., 0].tolist() == [[9, 0], [0, 0]]  # bottom-right window


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    dim, heads = 16, 4
    attn = Attention(dim, num_heads=heads)
    x = torch.randn(2, 3, 5, dim)
    q, k, v = attn.qkv(x.view(2, 15, dim)).chunk(3, dim=-1)
    split = lambda t: t.view(2, 15, heads, dim // heads).transpose(1, 2)  # (B, heads, N, d)
    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dim // heads), dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 3, 5, dim))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_one_window_covering_the_grid_equals_global_attention():
    torch.manual_seed(0)
    windowed = TransformerBlock(16, num_heads=2, window_size=4).eval()
    global_ = TransformerBlock(16, num_heads=2, window_size=0).eval()
    global_.load_state_dict(windowed.state_dict())
    x = torch.randn(3, 4, 4, 16)
    torch.testing.assert_close(windowed(x), global_(x))
    smaller = TransformerBlock(16, num_heads=2, window_size=2).eval()
    smaller.load_state_dict(windowed.state_dict())
    assert not torch.allclose(smaller(x), global_(x), atol=1e-4)


def test_whole_model_windowed_equals_global_when_one_window_covers_the_grid():
    torch.manual_seed(0)
    windowed = small_vit(window_size=4, window_block_indexes=(0, 1)).eval()
    global_ = small_vit(window_size=4, window_block_indexes=()).eval()
    global_.load_state_dict(windowed.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(windowed(x), global_(x))


@pytest.mark.parametrize("img_size,patch_size", [(32, 8), (64, 8), (64, 16), (128, 16)])
def test_output_shapes(img_size, patch_size):
    model = small_vit(img_size=img_size, patch_size=patch_size, window_size=4, window_block_indexes=(0,))
    assert model(torch.rand(2, 3, img_size, img_size)).shape == (2, 10)


def test_default_model_matches_the_reference_layout(reference_vit):
    model = reference_vit
    assert model.pos_embed.shape == (1, 8, 8, 192)
    assert [block.window_size for block in model.blocks] == [4, 0, 4, 0]
    assert model(torch.rand(1, 3, 128, 128)).shape == (1, 100)


def test_pos_embed_is_interpolated_for_another_input_size():
    model = small_vit(img_size=32, patch_size=8).eval()  # 4x4 grid
    assert model.position_embedding((4, 4)) is model.pos_embed
    assert model.position_embedding((6, 3)).shape == (1, 6, 3, 32)
    with torch.no_grad():
        model.pos_embed.fill_(0.5)
    assert torch.allclose(model.position_embedding((6, 3)), torch.full((1, 6, 3, 32), 0.5))
    assert model(torch.rand(2, 3, 48, 24)).shape == (2, 10)  # 6x3 grid, padded windows


def test_without_position_embedding():
    model = small_vit(use_abs_pos=False)
    assert model.pos_embed is None
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_bad_inputs_raise_clear_errors():
    model = small_vit()
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        model(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="window_block_indexes"):
        small_vit(depth=2, window_block_indexes=(2,))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        small_vit(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)


def test_drop_path_identity_in_eval_and_scaled_in_training():
    torch.manual_seed(0)
    x = torch.randn(1000, 3, 4)
    drop = DropPath(0.25)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)
    out = drop.train()(x)
    kept = (out != 0).flatten(1).all(dim=1)
    dropped = (out == 0).flatten(1).all(dim=1)
    assert torch.all(kept | dropped)  # whole samples are dropped, never single elements
    torch.testing.assert_close(out[kept], x[kept] / 0.75)
    assert 0.65 < kept.float().mean() < 0.85


def test_drop_path_rates_rise_linearly_over_depth():
    model = small_vit(depth=4, drop_path_rate=0.3)
    rates = [block.drop_path.drop_prob for block in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_init_truncated_normal_and_layernorm(reference_vit):
    model = reference_vit
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Linear)])
    assert weights.abs().max() <= 0.04 + 1e-6  # truncated at 2 std
    assert 0.015 < weights.std() < 0.02  # a normal with std 0.02 truncated at 2 std: 0.0176
    assert model.pos_embed.abs().max() <= 0.04 + 1e-6 and 0.015 < model.pos_embed.std() < 0.02
    norm = model.blocks[0].norm1
    assert torch.equal(norm.weight, torch.ones(192)) and torch.equal(norm.bias, torch.zeros(192))


def test_attention_flops_counted_by_hand(reference_vit, global_vit):
    # 128 px / patch 16 -> 8x8 = 64 tokens, C = 192. Global block: 2 matmuls x 64^2 x 192 MACs
    # x 2 FLOPs. Window 4 -> 4 windows of 16 tokens: 2 x 4 x 16^2 x 192 x 2.
    global_block, window_block = 2 * 64**2 * 192 * 2, 2 * 4 * 16**2 * 192 * 2
    assert attention_flops(reference_vit, 128) == 2 * window_block + 2 * global_block
    assert attention_flops(global_vit, 128) == 4 * global_block
    assert attention_flops(reference_vit, 128) < attention_flops(global_vit, 128)


def test_attention_flops_with_padding_and_with_one_window(reference_vit, global_vit):
    # 96 px -> 6x6 grid padded to 8x8: still 4 windows of 16 tokens, against 36 global tokens.
    assert attention_flops(reference_vit, 96) == 2 * (2 * 4 * 16**2 * 192 * 2) + 2 * (2 * 36**2 * 192 * 2)
    # 64 px -> 4x4 grid: one window covers it, so windowed and global cost the same.
    assert attention_flops(reference_vit, 64) == attention_flops(global_vit, 64) == 4 * (2 * 16**2 * 192 * 2)


def test_token_grid():
    assert token_grid(128, 16) == (8, 8)
    assert token_grid((96, 64), 8) == (12, 8)
    with pytest.raises(ValueError, match="multiple of 16"):
        token_grid(100, 16)


def test_a_few_adamw_steps_lower_the_loss():
    torch.manual_seed(0)
    model = small_vit(drop_path_rate=0.0)
    images, labels = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_attention_flops_agree_with_the_counted_forward_flops():
    windowed, global_ = small_vit(window_size=2), small_vit(window_block_indexes=())
    images = torch.rand(3, 3, 32, 32)
    difference = forward_flops(global_, images) - forward_flops(windowed, images)
    assert difference == 3 * (attention_flops(global_, 32) - attention_flops(windowed, 32)) > 0


def test_attention_under_cpu_bf16_autocast_runs_in_fp32_and_returns_bf16():
    """The fused attention's bf16 backward is slow on a CPU: under autocast it computes in fp32, gradients flow."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(q, k, v)
    expected = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected.bfloat16())
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in (q, k, v))
    plain = attend(q.float(), k.float(), v.float())  # without autocast: the fused kernel as it is
    assert plain.dtype == torch.float32 and torch.allclose(plain, expected, atol=1e-6)

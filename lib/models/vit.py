"""Vision Transformer with local window attention (REFERENCE.md section 2).

Layout follows ViTDet / segment-anything's image encoder: tokens stay a (B, H, W, C) map
throughout, so a block can attend either globally over the whole map or locally inside
non-overlapping windows (padding the map to a multiple of the window and removing the
padding afterwards).
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

from lib.data.transforms import Normalize


def token_grid(img_size, patch_size):
    """Token grid (Hp, Wp) of an image of `img_size` pixels (int or (H, W)) cut into patches."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} is not divisible by the patch size {patch_size}; "
            f"resize or crop the images to a multiple of {patch_size} pixels")
    return height // patch_size, width // patch_size


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: (B, in_chans, H, W) -> (B, H/patch, W/patch, embed_dim)."""

    def __init__(self, patch_size=16, in_chans=3, embed_dim=192):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention among all tokens of a map: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, dim, num_heads=8, qkv_bias=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, height, width, dim = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        out = attend(q, k, v)
        out = out.transpose(1, 2).reshape(batch, height, width, dim)
        return self.proj(out)


def attend(q, k, v):
    """softmax(q k^T / sqrt(head_dim)) v for q, k, v (B, heads, N, head_dim) -> (B, heads, N, head_dim).

    Under bf16 autocast on a CPU it runs in fp32 (the result cast back to bf16): there the backward pass of the
    fused bf16 attention kernel took 5.6-7.5x its fp32 time and made a whole ViT step 1.2-1.5x slower than in
    fp32, while the bf16 matrix products around it are 2x faster (benchmarks.bf16, docs/benchmarks.md).
    """
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu") and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


def window_partition(x, window_size):
    """Cut a map into non-overlapping windows, zero-padding bottom/right to a multiple of the window.

    x: (B, H, W, C). Returns windows (B * num_windows, window_size, window_size, C) in
    row-major window order, and the padded size (Hp, Wp).
    """
    batch, height, width, dim = x.shape
    pad_h, pad_w = -height % window_size, -width % window_size
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = height + pad_h, width + pad_w
    x = x.reshape(batch, hp // window_size, window_size, wp // window_size, window_size, dim)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, dim)
    return windows, (hp, wp)


def window_unpartition(windows, window_size, pad_hw, hw):
    """Inverse of `window_partition`: windows (B * num_windows, ws, ws, C) -> map (B, H, W, C).

    pad_hw: the padded size (Hp, Wp) returned by `window_partition`; hw: the original (H, W).
    """
    (hp, wp), (height, width) = pad_hw, hw
    rows, cols = hp // window_size, wp // window_size
    batch = windows.shape[0] // (rows * cols)
    x = windows.reshape(batch, rows, cols, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, -1)
    return x[:, :height, :width].contiguous()


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability p.

    Kept samples are scaled by 1 / (1 - p) so the expectation is unchanged; identity in eval.
    """

    def __init__(self, drop_prob=0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * mask / keep_prob

    def extra_repr(self):
        return f"drop_prob={self.drop_prob:.3f}"


class Mlp(nn.Sequential):
    """Token-wise feed-forward network: Linear(dim, hidden) -> GELU -> Linear(hidden, dim)."""

    def __init__(self, dim, hidden):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block on a (B, H, W, C) map: x + attn(norm(x)), then x + mlp(norm(x)).

    window_size > 0 attends inside non-overlapping windows of that many tokens per side
    (the map is padded to a multiple of the window); window_size == 0 attends globally.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0, window_size=0):
        super().__init__()
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0 means global attention), got {window_size}")
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def attend(self, x):
        """Global or windowed attention over a normalised map (B, H, W, C)."""
        if self.window_size == 0:
            return self.attn(x)
        windows, pad_hw = window_partition(x, self.window_size)
        windows = self.attn(windows)
        return window_unpartition(windows, self.window_size, pad_hw, x.shape[1:3])

    def forward(self, x):
        x = x + self.drop_path(self.attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SimpleViT(nn.Module):
    """Plain ViT classifier mixing windowed and global attention blocks.

    Input: pixel images (B, in_chans, H, W) in [0, 1], H and W multiples of patch_size
    (other sizes than img_size get an interpolated position embedding). Output: logits
    (B, num_classes). Blocks listed in window_block_indexes use window attention of
    window_size tokens per side, the others global attention.
    """

    def __init__(self, img_size=128, num_classes=100, patch_size=16, in_chans=3, embed_dim=192,
                 depth=4, num_heads=4, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.1,
                 use_abs_pos=True, window_size=4, window_block_indexes=(0, 2)):
        super().__init__()
        bad = [i for i in window_block_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f"window_block_indexes {bad} out of range for depth {depth}")
        grid = token_grid(img_size, patch_size)
        self.normalize = Normalize()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim)) if use_abs_pos else None
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, rate,
                             window_size if i in window_block_indexes else 0)
            for i, rate in enumerate(rates))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        if self.pos_embed is not None:
            _trunc_normal(self.pos_embed)
        self.apply(_init_weights)

    def position_embedding(self, grid):
        """Absolute position embedding (1, Hp, Wp, C) resized to the token grid (Hp, Wp)."""
        pos = self.pos_embed
        if tuple(pos.shape[1:3]) == tuple(grid):
            return pos
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
        return pos.permute(0, 2, 3, 1)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f"expected images (B, {self.patch_embed.proj.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        grid = token_grid(tuple(x.shape[2:]), self.patch_embed.patch_size)
        x = self.patch_embed(self.normalize(x))
        if self.pos_embed is not None:
            x = x + self.position_embedding(grid)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x).mean(dim=(1, 2))  # global average pool over tokens
        return self.head(x)


def _trunc_normal(tensor, std=0.02):
    """Normal(0, std) truncated at +-2 std (torch's default bounds +-2 are absolute, not in std)."""
    nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def _init_weights(module):
    """Truncated-normal (std 0.02) linear weights with zero bias; LayerNorm weight 1, bias 0."""
    if isinstance(module, nn.Linear):
        _trunc_normal(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def attention_flops(model, img_size):
    """FLOPs (2 per multiply-accumulate) of the attention matmuls QK^T and AV for one image.

    Sums over `model.blocks` of a SimpleViT at input size `img_size` (int or (H, W)). A global
    block over N tokens of width C costs 2 matmuls x N^2 C MACs; a windowed block costs the same
    per window with N = window_size^2, times the number of windows of the padded grid.
    Projections, MLPs and softmax are not counted.
    """
    height, width = token_grid(img_size, model.patch_embed.patch_size)
    dim = model.patch_embed.proj.out_channels
    total = 0
    for block in model.blocks:
        ws = block.window_size
        if ws == 0:
            groups, tokens = 1, height * width
        else:
            groups, tokens = math.ceil(height / ws) * math.ceil(width / ws), ws * ws
        total += 2 * 2 * groups * tokens * tokens * dim  # (QK^T + AV) x 2 FLOPs per MAC
    return total

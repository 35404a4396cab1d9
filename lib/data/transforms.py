"""Batch transforms on the images' device: training augmentation, evaluation resize, and the
normalisation every model applies to its pixel-space input.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

from lib.data.decoded import base_size


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """First module of every model: pixel images in [0, 1] -> ImageNet-normalised.

    Input and output: float (B, 3, H, W).
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def _to_float(images):
    """uint8 pixels -> float32 in [0, 1]; float stays float32."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _uniform(low_high, u):
    low, high = low_high
    return low + (high - low) * u


class TrainAugment(nn.Module):
    """The reference's training augmentation for a batch, on the batch's device.

    Rotation by up to +-max_rotation degrees, a random-sized crop (area share `scale`,
    aspect `ratio`) of the largest axis-aligned square inside the rotated image (no
    empty corners), and a horizontal flip form one affine map per sample, applied to
    the whole batch by a single grid_sample (bilinear or nearest, chosen per batch).
    Then each channel is scaled by U(jitter). Randomness comes from torch's global
    generators, so torch.manual_seed makes it repeatable.

    Input: uint8 or float (B, 3, R, R); output: float32 (B, 3, size, size) in [0, 1].
    """

    def __init__(self, size=128, scale=(0.25, 1.0), ratio=(0.8, 1.2), max_rotation=15.0,
                 jitter=(0.85, 1.15), flip=True):
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}")
        self.size, self.scale, self.ratio = size, scale, ratio
        self.max_rotation, self.jitter, self.flip = max_rotation, jitter, flip
        self.modes = ("bilinear", "nearest")

    def sample_affine(self, n, device=None):
        """n random maps for F.affine_grid: (n, 2, 3), output -> input normalised coordinates."""
        u = torch.rand(6, n, device=device)
        angle = math.radians(self.max_rotation) * (2 * u[0] - 1)
        cos, sin = angle.cos(), angle.sin()
        valid = 1 / (cos.abs() + sin.abs())  # half-side of the largest square inside the rotated image
        area = _uniform(self.scale, u[1])
        aspect = torch.exp(_uniform((math.log(self.ratio[0]), math.log(self.ratio[1])), u[2]))
        half_w = torch.minimum(valid * (area * aspect).sqrt(), valid)
        half_h = torch.minimum(valid * (area / aspect).sqrt(), valid)
        centre_x = (valid - half_w) * (2 * u[3] - 1)
        centre_y = (valid - half_h) * (2 * u[4] - 1)
        if self.flip:
            half_w = torch.where(u[5] < 0.5, -half_w, half_w)
        # input point = rotation @ (centre + diag(half_w, half_h) @ output point)
        return torch.stack([
            torch.stack([cos * half_w, -sin * half_h, cos * centre_x - sin * centre_y], dim=1),
            torch.stack([sin * half_w, cos * half_h, sin * centre_x + cos * centre_y], dim=1),
        ], dim=1)

    def forward(self, images):
        images = _to_float(images)
        n = images.shape[0]
        grid = F.affine_grid(self.sample_affine(n, images.device), [n, 3, self.size, self.size],
                             align_corners=False)
        mode = self.modes[torch.randint(len(self.modes), ()).item()]
        out = F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)
        gains = torch.empty(n, 3, 1, 1, device=images.device).uniform_(*self.jitter)
        return (out * gains).clamp_(0, 1)


class EvalTransform(nn.Module):
    """The reference's evaluation transform for a batch of cached images.

    Centre crop of the share size/base_size(size) of each side (exactly `size` pixels
    for images cached at base_size(size)), resized to `size` when it is not already.
    Input: uint8 or float (B, 3, H, W); output: float32 (B, 3, size, size) in [0, 1].
    """

    def __init__(self, size=128):
        super().__init__()
        self.size = size

    def forward(self, images):
        height, width = images.shape[-2:]
        crop_h, crop_w = (round(side * self.size / base_size(self.size)) for side in (height, width))
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        out = _to_float(images[..., top:top + crop_h, left:left + crop_w])
        if (crop_h, crop_w) != (self.size, self.size):
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear",
                                antialias=True, align_corners=False)
        return out.clamp_(0, 1)

"""lib/data/transforms.py: the batch transforms (training augmentation, evaluation crop)."""
import pytest
import torch
import torch.nn.functional as F

from lib import data


# ---------------------------------------------------------------- batch transforms

def identity_augment(size, **overrides):
    settings = dict(scale=(1, 1), ratio=(1, 1), max_rotation=0, jitter=(1, 1), flip=False)
    return data.TrainAugment(size, **{**settings, **overrides})


def random_images(n=8, side=36):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_train_augment_shape_dtype_range(dtype):
    images = random_images()
    images = images if dtype == torch.uint8 else images / 255
    out = data.TrainAugment(size=32)(images)
    assert out.dtype == torch.float32 and out.shape == (8, 3, 32, 32)
    assert 0 <= out.min() and out.max() <= 1


def test_train_augment_is_deterministic_under_a_seed():
    augment, images = data.TrainAugment(size=32), random_images()
    torch.manual_seed(0)
    first = augment(images)
    torch.manual_seed(0)
    assert torch.equal(first, augment(images))
    torch.manual_seed(1)
    assert not torch.allclose(first, augment(images))


def test_train_augment_without_randomness_is_a_plain_resize():
    images = random_images()
    for seed in range(4):  # both interpolation modes leave an image at the output size unchanged
        torch.manual_seed(seed)
        assert torch.allclose(identity_augment(36)(images), images / 255, atol=1e-5)
    augment = identity_augment(32)
    augment.modes = ("bilinear",)
    expected = F.interpolate(images / 255, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(augment(images), expected, atol=1e-5)


def test_train_augment_flip_flips():
    images = random_images(16, 32) / 255
    torch.manual_seed(0)
    out = identity_augment(32, flip=True)(images)
    same = [torch.allclose(o, i, atol=1e-6) for o, i in zip(out, images)]
    flipped = [torch.allclose(o, i.flip(-1), atol=1e-6) for o, i in zip(out, images)]
    assert all(s != f for s, f in zip(same, flipped))
    assert any(same) and any(flipped)


def test_train_augment_crops_stay_inside_the_rotated_image():
    augment = data.TrainAugment(size=32, scale=(0.25, 1.0), max_rotation=15.0)
    torch.manual_seed(0)
    theta = augment.sample_affine(2000)
    corners = torch.tensor([[-1.0, -1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, 1]]).T
    points = theta @ corners  # (n, 2, 4): crop corners in input coordinates
    assert points.abs().max() <= 1 + 1e-5
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0].abs())
    assert angles.abs().max() <= torch.deg2rad(torch.tensor(15.0)) + 1e-5
    assert angles.abs().max() > torch.deg2rad(torch.tensor(10.0))  # it does rotate


def test_train_augment_jitters_each_channel():
    images = torch.full((64, 3, 32, 32), 0.5)
    torch.manual_seed(0)
    gains = identity_augment(32, jitter=(0.85, 1.15))(images) / 0.5
    assert torch.allclose(gains, gains[..., :1, :1].expand_as(gains))  # one gain per channel
    assert 0.85 - 1e-6 <= gains.min() and gains.max() <= 1.15 + 1e-6
    assert gains.std() > 0.05


def test_train_augment_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        data.TrainAugment(scale=(0.5, 2.0))


def test_eval_transform_is_a_centre_crop():
    images = random_images(2, 144)
    out = data.EvalTransform(128)(images)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 128, 128)
    assert torch.equal(out, images[..., 8:136, 8:136] / 255)
    small = random_images(2, 36)
    assert torch.equal(data.EvalTransform(32)(small), small[..., 2:34, 2:34] / 255)
    assert data.EvalTransform(32)(random_images(2, 128)).shape == (2, 3, 32, 32)

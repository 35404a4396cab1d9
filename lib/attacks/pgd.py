"""PGD adversarial samples (projected gradient descent in the L-infinity ball), in pixel space.

Everything works in pixel space: images are float (B, 3, H, W) in [0, 1], every model
normalises internally, and epsilon / step size are pixel units (8/255 means 8 grey levels).

The original harness gave its attack in normalised units (PGD-10, step 0.01, epsilon 0.1,
after ImageNet mean/std normalisation). A normalised distance d is a pixel distance of about
d x std; with one number for the three channels, std = mean(IMAGENET_STD) = 0.226, so the
default attack below is step 0.01 x 0.226 = 0.58/255 and epsilon 0.1 x 0.226 = 5.76/255
(`PGDAttack.from_normalized`).
"""
from contextlib import contextmanager
from dataclasses import dataclass
import math

import torch
from torch import nn
import torch.nn.functional as F

from lib.data.transforms import IMAGENET_STD


PIXEL_PER_NORMALIZED = sum(IMAGENET_STD) / len(IMAGENET_STD)  # 0.226


TARGET_MODES = ("least_likely", None)


@contextmanager
def frozen_eval(model):
    """Put `model` in eval mode with every parameter frozen; restore both on exit.

    Each submodule gets its own previous `training` flag back (a model may mix modes) and
    each parameter its own `requires_grad`, also when the body raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def _unwrap(model):
    """The bare module of a (Distributed)DataParallel wrapper: crafting needs no gradient sync."""
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, parallel) else model


def _check_number(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_images(images, values=True):
    """images must be float (B, 3, H, W); with `values`, in [0, 1] too (one device sync)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor in [0, 1], got {kind}; "
                         "convert uint8 batches with the eval transform (or x.float() / 255) first")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if not values:
        return
    low, high = torch.stack(torch.aminmax(images)).tolist()  # one device sync
    if low < 0 or high > 1:
        raise ValueError(f"images must be pixel values in [0, 1], got range [{low:.3g}, {high:.3g}]; "
                         "attacks work before normalisation (every model normalises internally)")


def _check_labels(labels, images):
    is_tensor = isinstance(labels, torch.Tensor)
    if not is_tensor or labels.shape != images.shape[:1] or labels.is_floating_point():
        got = f"{labels.dtype} {tuple(labels.shape)}" if is_tensor else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape ({images.shape[0]},) matching the batch "
                         f"of class indices, got {got}")


@dataclass(frozen=True)
class AttackResult:
    """What one `PGDAttack.perturb` call produced, all detached on the images' device.

    adversarial: float (B, 3, H, W) in [0, 1], within epsilon (L-inf) of the clean images;
    clean_logits: (B, num_classes), the model's logits on the clean images, in eval mode;
    targets: long (B,), the class each image was pushed towards, or None for an untargeted attack.
    """
    adversarial: torch.Tensor
    clean_logits: torch.Tensor
    targets: torch.Tensor | None


class PGDAttack:
    """Projected gradient descent in the L-infinity ball, pixel space (Madry et al., 2018).

    targeted="least_likely": the target is the class with the lowest clean logit, chosen at
    the first step and kept fixed; each step moves x <- x - step_size * sign(grad CE(model(x),
    target)). targeted=None: each step moves x <- x + step_size * sign(grad CE(model(x), labels)).
    After every step x is projected onto the epsilon ball around the original and clamped to
    [0, 1], then detached. random_start begins at a uniform point of the ball (global RNG).
    `perturb` returns an AttackResult: the adversarial images, the clean logits and the targets.
    """

    def __init__(self, num_steps=10, step_size=0.01 * PIXEL_PER_NORMALIZED,
                 epsilon=0.1 * PIXEL_PER_NORMALIZED, targeted="least_likely", random_start=False):
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        _check_number("step_size", step_size, 0)
        _check_number("epsilon", epsilon, 0)
        if targeted not in TARGET_MODES:
            raise ValueError(f"targeted must be one of {TARGET_MODES}, got {targeted!r}")
        self.num_steps = num_steps
        self.step_size = float(step_size)
        self.epsilon = float(epsilon)
        self.targeted = targeted
        self.random_start = bool(random_start)

    @classmethod
    def from_normalized(cls, num_steps=10, step_size=0.01, epsilon=0.1, std=IMAGENET_STD, **kwargs):
        """Attack given in normalised units (the original harness) -> pixel units.

        Pixel distance = normalised distance x mean(std); the defaults are the harness's PGD-10,
        step 0.01, epsilon 0.1, i.e. step 0.58/255 and epsilon 5.76/255 in pixels.
        """
        scale = sum(std) / len(std)
        return cls(num_steps, step_size * scale, epsilon * scale, **kwargs)

    def settings(self):
        """The plain settings that determine the attack's result (pixel units; a cache key)."""
        return {"num_steps": self.num_steps, "step_size": self.step_size, "epsilon": self.epsilon,
                "targeted": self.targeted, "random_start": self.random_start}

    def __repr__(self):
        return (f"PGDAttack(num_steps={self.num_steps}, step_size={self.step_size * 255:.3g}/255, "
                f"epsilon={self.epsilon * 255:.3g}/255, targeted={self.targeted!r}, "
                f"random_start={self.random_start})")

    def perturb(self, model, images, labels=None, on_step=None, check_range=True):
        """An AttackResult: adversarial images (B, 3, H, W) in [0, 1] within epsilon (L-inf) of `images`, the
        clean logits (B, num_classes) and the targets (B,) (None when untargeted).

        images: float (B, 3, H, W) in [0, 1]; labels: long (B,), required when untargeted.
        check_range=False skips the check that the pixels lie in [0, 1], the one check that waits for the device
        (for callers whose images are in range by construction, e.g. every step of adversarial training).
        The model runs in eval mode with frozen parameters; its modes, requires_grad flags
        and .grad fields are as before afterwards. on_step(k, x), if given, is called after
        each step k = 1..num_steps with the batch so far (detached, projected), still in eval mode.
        """
        _check_images(images, check_range)
        if labels is not None:
            _check_labels(labels, images)
        elif self.targeted is None:
            raise ValueError("an untargeted attack ascends the loss of the true labels: "
                             "call perturb(model, images, labels)")
        if torch.is_inference_mode_enabled():
            raise ValueError("perturb needs gradients: call it outside torch.inference_mode()")
        model = _unwrap(model)
        images = images.detach()
        with frozen_eval(model), torch.enable_grad():
            return self._run(model, images, labels, on_step)

    def _run(self, model, images, labels, on_step):
        low = (images - self.epsilon).clamp_(min=0)  # the epsilon ball intersected with [0, 1]
        high = (images + self.epsilon).clamp_(max=1)
        x, clean_logits = images, None
        if self.random_start:
            with torch.no_grad():
                clean_logits = model(images)
            x = (x + torch.empty_like(x).uniform_(-self.epsilon, self.epsilon)).clamp(low, high)
        sign = -1.0 if self.targeted else 1.0  # descend the target's loss, ascend the label's
        for step in range(self.num_steps):
            x.requires_grad_(True)
            logits = model(x)
            if clean_logits is None:  # first step without random start: x is the clean batch
                clean_logits = logits.detach()
            if step == 0:
                target = clean_logits.argmin(1) if self.targeted else labels
            grad, = torch.autograd.grad(F.cross_entropy(logits, target, reduction="sum"), x)
            x = (x.detach() + sign * self.step_size * grad.sign()).clamp(low, high)
            if on_step is not None:
                on_step(step + 1, x)
        return AttackResult(adversarial=x, clean_logits=clean_logits, targets=target if self.targeted else None)

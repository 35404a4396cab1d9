"""PGD adversarial samples, evaluation under attack, and the adversarial-training hook.

Everything works in pixel space: images are float (B, 3, H, W) in [0, 1], every model
normalises internally, and epsilon / step size are pixel units (8/255 means 8 grey levels).

The original harness gave its attack in normalised units (PGD-10, step 0.01, epsilon 0.1,
after ImageNet mean/std normalisation). A normalised distance d is a pixel distance of about
d x std; with one number for the three channels, std = mean(IMAGENET_STD) = 0.226, so the
default attack below is step 0.01 x 0.226 = 0.58/255 and epsilon 0.1 x 0.226 = 5.76/255
(`PGDAttack.from_normalized`).
"""
from contextlib import contextmanager
from itertools import islice
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from lib.data import IMAGENET_STD, evenly_spaced
from lib.train import label_rank

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


def _check_images(images):
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor in [0, 1], got {kind}; "
                         "convert uint8 batches with the eval transform (or x.float() / 255) first")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
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


class PGDAttack:
    """Projected gradient descent in the L-infinity ball, pixel space (Madry et al., 2018).

    targeted="least_likely": the target is the class with the lowest clean logit, chosen at
    the first step and kept fixed; each step moves x <- x - step_size * sign(grad CE(model(x),
    target)). targeted=None: each step moves x <- x + step_size * sign(grad CE(model(x), labels)).
    After every step x is projected onto the epsilon ball around the original and clamped to
    [0, 1], then detached. random_start begins at a uniform point of the ball (global RNG).

    After `perturb`, `last_targets` holds the targets (B,) (None when untargeted) and
    `last_clean_logits` the clean logits (B, num_classes) in eval mode, both detached.
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
        self.last_targets = None
        self.last_clean_logits = None

    @classmethod
    def from_normalized(cls, num_steps=10, step_size=0.01, epsilon=0.1, std=IMAGENET_STD, **kwargs):
        """Attack given in normalised units (the original harness) -> pixel units.

        Pixel distance = normalised distance x mean(std); the defaults are the harness's PGD-10,
        step 0.01, epsilon 0.1, i.e. step 0.58/255 and epsilon 5.76/255 in pixels.
        """
        scale = sum(std) / len(std)
        return cls(num_steps, step_size * scale, epsilon * scale, **kwargs)

    def __repr__(self):
        return (f"PGDAttack(num_steps={self.num_steps}, step_size={self.step_size * 255:.3g}/255, "
                f"epsilon={self.epsilon * 255:.3g}/255, targeted={self.targeted!r}, "
                f"random_start={self.random_start})")

    def perturb(self, model, images, labels=None, on_step=None):
        """Adversarial images (B, 3, H, W) in [0, 1] within epsilon (L-inf) of `images`.

        images: float (B, 3, H, W) in [0, 1]; labels: long (B,), required when untargeted.
        The model runs in eval mode with frozen parameters; its modes, requires_grad flags
        and .grad fields are as before afterwards. on_step(k, x), if given, is called after
        each step k = 1..num_steps with the batch so far (detached, projected), still in eval mode.
        """
        _check_images(images)
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
        self.last_clean_logits = clean_logits
        self.last_targets = target if self.targeted else None
        return x


def evaluate_under_attack(model, loader, attack, transform=None, device=None, max_batches=None):
    """Clean and adversarial accuracy of `model` on `loader` under `attack`, with per-image results.

    loader yields (images, labels); `transform` (optional callable, e.g. the eval transform;
    an nn.Module is moved to `device`) maps a loader batch on `device` to float pixel images
    (B, 3, H, W) in [0, 1]. device defaults to the model's. The model runs in eval mode and
    gets its modes back afterwards.

    Returns the dict of `summarise` (accuracies and rates in percent, perturbation sizes, num_images)
    with the per-image arrays it was computed from under "per_image" (see `evaluate_over_steps`).
    """
    steps = attack.num_steps
    return evaluate_over_steps(model, loader, attack, [steps], transform, device, max_batches)[steps]


def evaluate_over_steps(model, loader, attack, steps, transform=None, device=None, max_batches=None):
    """evaluate_under_attack of the same attack stopped after each of `steps`, from one run of it.

    The first k steps of a PGD run are exactly a k-step PGD with the same settings (the target is
    fixed at the first step; with random_start, the same seed), so one run of attack.num_steps
    steps measures every shorter attack for the price of the longest plus one forward pass each.
    steps: step counts in 1..attack.num_steps. Returns {k: summarise(per_image) + {"per_image": per_image}}
    where per_image holds numpy arrays over the n images, in loader order: label (n,), target (n,)
    (-1 when untargeted), clean_top5 and adv_top5 (n, 5) class indices by decreasing logit, and the
    perturbation's linf, l2 (pixel units in [0, 1]) and mse (mean squared change) per image.
    """
    steps = _check_steps(steps, attack.num_steps)
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    if isinstance(transform, nn.Module):
        transform = transform.to(device)
    batches = {k: [] for k in steps}
    num_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
    with frozen_eval(model):
        for images, labels in tqdm(islice(loader, max_batches), total=num_batches, desc="PGD eval", leave=False):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if transform is not None:
                images = transform(images)
            kept = {}

            def keep(k, adv):
                if k in batches:
                    with torch.no_grad():
                        kept[k] = adv, model(adv)
            attack.perturb(model, images, labels, on_step=keep)
            for k, (adv, adv_logits) in kept.items():
                batches[k].append(_per_image(images, adv, labels, attack.last_clean_logits, adv_logits,
                                             attack.last_targets))
    results = {}
    for k, parts in batches.items():
        if not parts:
            raise ValueError("the loader yielded no images (empty loader or max_batches=0)")
        per_image = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        results[k] = {**summarise(per_image), "per_image": per_image}
    return results


def _per_image(images, adv, labels, clean_logits, adv_logits, targets):
    """One batch's per-image results as numpy arrays (see evaluate_over_steps)."""
    k = min(5, clean_logits.shape[1])
    delta = (adv - images).flatten(1).float()
    to_numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return {"label": to_numpy(labels).astype(np.int64),
            "target": to_numpy(targets).astype(np.int64) if targets is not None else np.full(len(labels), -1),
            "clean_top5": to_numpy(clean_logits.topk(k, dim=1).indices).astype(np.int16),
            "adv_top5": to_numpy(adv_logits.topk(k, dim=1).indices).astype(np.int16),
            "clean_rank": to_numpy(label_rank(clean_logits, labels)).astype(np.int16),
            "adv_rank": to_numpy(label_rank(adv_logits, labels)).astype(np.int16),
            "linf": to_numpy(delta.abs().amax(1)).astype(np.float64),
            "l2": to_numpy(delta.norm(dim=1)).astype(np.float64),
            "mse": to_numpy(delta.square().mean(1)).astype(np.float64)}


def successes(per_image):
    """Per-image success of an attack, (succeeded, eligible), bool (n,) each, from the arrays of
    evaluate_over_steps. Targeted: every image is eligible, and it succeeded when its adversarial top-1 is the
    target. Untargeted: the images the model got right (top-1) are eligible, and one succeeded when it is
    wrong after the attack."""
    if (per_image["target"] >= 0).all():
        return per_image["adv_top5"][:, 0] == per_image["target"], np.ones(len(per_image["target"]), dtype=bool)
    eligible = per_image["clean_rank"] == 0
    return eligible & (per_image["adv_rank"] > 0), eligible


def summarise(per_image):
    """Summary of per-image attack results (the arrays of evaluate_over_steps). Percentages:
      clean_acc1, clean_acc5, adv_acc1, adv_acc5;
      success_rate: `successes` over the eligible images (nan when none is eligible), and the counts behind
        it, successes and success_images;
      linf, l2: mean per-image L-inf and L2 norm of the perturbation, pixel units in [0, 1];
      psnr: 10 log10(1 / MSE) in dB, the MSE taken over all pixels of all images (inf if none changed);
      num_images.
    """
    clean_rank, adv_rank = per_image["clean_rank"], per_image["adv_rank"]
    n = len(clean_rank)
    if n == 0:
        raise ValueError("no images to summarise")
    succeeded, eligible = successes(per_image)
    hits, tried = int(succeeded.sum()), int(eligible.sum())
    mse = float(per_image["mse"].mean())
    return {
        "clean_acc1": 100.0 * (clean_rank < 1).mean(), "clean_acc5": 100.0 * (clean_rank < 5).mean(),
        "adv_acc1": 100.0 * (adv_rank < 1).mean(), "adv_acc5": 100.0 * (adv_rank < 5).mean(),
        "success_rate": 100.0 * hits / tried if tried else math.nan, "successes": hits, "success_images": tried,
        "linf": float(per_image["linf"].mean()), "l2": float(per_image["l2"].mean()),
        "psnr": 10 * math.log10(1 / mse) if mse > 0 else math.inf,
        "num_images": n,
    }


def _check_steps(steps, num_steps):
    """Sorted distinct step counts, each an int in 1..num_steps."""
    steps = sorted(set(steps))
    bad = [k for k in steps if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_steps]
    if not steps or bad:
        raise ValueError(f"steps must be step counts in 1..{num_steps} (the attack's num_steps), got {steps!r}; "
                         "raise the attack's num_steps to measure longer attacks")
    return steps


def robustness_curve(model, loader, epsilons, num_steps=10, targeted="least_likely", transform=None, device=None):
    """evaluate_under_attack at each epsilon (pixel units) with PGD of `num_steps` steps of epsilon / num_steps.

    The step follows the original harness's ratio (step 0.01 for epsilon 0.1 at 10 steps): its
    default attack is the member epsilon = 5.76/255 of this family. Returns a list of the
    dicts of evaluate_under_attack, each with its `epsilon` (pixel units) added.
    """
    rows = []
    for epsilon in epsilons:
        attack = PGDAttack(num_steps, step_size=epsilon / num_steps, epsilon=epsilon, targeted=targeted)
        rows.append({"epsilon": epsilon, **evaluate_under_attack(model, loader, attack, transform, device)})
    return rows


def subset_loader(dataset, num_images=None, batch_size=100, within=None):
    """A DataLoader, in order, over `num_images` evenly spaced items of the first `within` items of `dataset`
    (data.evenly_spaced; num_images None: all of them; within None: the whole dataset).

    The picks spread over the whole list (whatever its order) and are the same every time, so
    two models are attacked on the same images.
    """
    if num_images is not None and (isinstance(num_images, bool) or not isinstance(num_images, int)
                                   or num_images < 1):
        raise ValueError(f"num_images must be a positive integer or None (all images), got {num_images!r}")
    return DataLoader(Subset(dataset, evenly_spaced(within or len(dataset), num_images)), batch_size=batch_size)


class AdversarialTraining:
    """Training-batch hook: replace a clean batch by untargeted PGD samples crafted on the fly.

    The trainer calls `adv_images, logs = hook(model, images, labels)` on every training batch
    and trains on adv_images; at evaluation time it does not call it, so the model is the plain
    model. Crafting runs with BatchNorm/Dropout in eval mode (running statistics untouched) and
    the model's modes restored after. logs["clean_correct"] is a 0-d tensor: the clean top-1
    correct count of the batch (eval mode, the trainer's top-k rule), read off the first PGD step at no extra cost.
    Default attack: the reference PGD, 4 steps, step 2/255, epsilon 8/255, cross-entropy.
    Precision: the samples are crafted in the training precision, since the trainer calls the hook
    inside its autocast (bf16 where the run's amp resolves to bf16, e.g. on a GPU; fp32 otherwise):
    they are training data for a model trained in that precision, and crafting costs most of an
    adversarial step. The evaluation attacks of notebooks 03 and 04 run in IEEE fp32 (lib.analysis.PRECISION).
    """

    def __init__(self, attack=None):
        if attack is None:
            attack = PGDAttack(num_steps=4, step_size=2 / 255, epsilon=8 / 255, targeted=None)
        if attack.targeted is not None:
            raise ValueError("adversarial training ascends the true labels' loss: "
                             "pass an untargeted attack, PGDAttack(..., targeted=None)")
        self.attack = attack

    def __repr__(self):
        return f"AdversarialTraining({self.attack!r})"

    def __call__(self, model, images, labels):
        """images: float (B, 3, H, W) in [0, 1]; labels: long (B,) -> (adv_images, logs)."""
        adv = self.attack.perturb(model, images, labels)
        correct = (label_rank(self.attack.last_clean_logits, labels) < 1).sum()  # ties count against, as in the meters
        return adv, {"clean_correct": correct}

"""Evaluation of a model under attack: per-image records, success counts with intervals, summaries."""
from itertools import islice
import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from lib.attacks.pgd import frozen_eval
from lib.data.decoded import evenly_spaced
from lib.training.metrics import label_rank


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
        for images, labels in tqdm(islice(loader, max_batches), total=num_batches,
                                   desc=f"{type(attack).__name__} eval", leave=False):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if transform is not None:
                images = transform(images)
            kept = {}

            def keep(k, adv):
                if k in batches:
                    with torch.no_grad():
                        kept[k] = adv, model(adv)
            result = attack.perturb(model, images, labels, on_step=keep)
            for k, (adv, adv_logits) in kept.items():
                batches[k].append(_per_image(images, adv, labels, result.clean_logits, adv_logits, result.targets))
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

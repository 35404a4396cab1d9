"""Per-image analyses of finished runs, cached beside them (lib.report.cache): predictions and attack evaluations.

Everything the report says about a trained model is computed from these files, so a re-render with every
run and analysis cached loads no model and attacks nothing. Every analysis computes in PRECISION (IEEE fp32:
no autocast, no TF32; lib.core.devices.precision_context), whatever precision the run trained in, so that a
per-image result means the same on every device. Each function takes a finished
lib.study.Run; `device` is only used when something has to be computed; `force=True` recomputes
(the previous files are kept renamed). Accuracies are percentages; per-image arrays follow the
validation set's order (`index` holds the validation-set index of each row).
"""
import contextlib
from itertools import islice
import math

import numpy as np
import torch
from torch.utils.data import DataLoader

from lib import attacks, data, study
from lib.attacks.apgd import LOSSES
from lib.core.devices import precision_context, resolve_device
from lib.models import vit
from lib.report.cache import cached
from lib.training.metrics import label_rank


# Robustness curves and the steps x epsilon grid attack at most this many of the attacked images (evenly
# spaced): they run many attacks, and their shape is the point; the default attack uses every attacked image.
CURVE_IMAGES = 200
PRECISION = "fp32"
# APGD attacks only the images a batch's model gets right, and its cost per step barely grows with their number
# on a CPU (an 8-image step costs about half a 100-image one): the stronger attacks go through large batches.
STRONG_BATCH = 500


@contextlib.contextmanager
def _final_model(run, device):
    """(device, the run's final model on it in eval mode), every op inside the block in PRECISION."""
    dev = resolve_device(device)
    with precision_context(PRECISION, dev):
        yield dev, run.load_model(device=dev)


def predictions(run, device="auto", force=False):
    """Top-5 classes of the run's final model (checkpoint.pth) on every image of its validation set (on the
    first `val_batches` batches in a capped run, as its own evaluation).

    Returns {'index': (n,), 'label': (n,), 'top5': (n, 5) class indices by decreasing logit,
    'rank': (n,) other classes scoring at least as high as the label (train.label_rank)}.
    """
    def compute():
        val_set, transform = study.val_data(run.config)
        labels, tops, ranks = [], [], []
        with _final_model(run, device) as (dev, model), torch.no_grad():
            transform = transform.to(dev)
            loader = DataLoader(val_set, batch_size=run.config["val_batch_size"])
            for images, batch_labels in islice(loader, run.config.get("val_batches")):
                logits = model(transform(images.to(dev)))
                tops.append(logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu().numpy().astype(np.int16))
                labels.append(batch_labels.numpy().astype(np.int64))
                ranks.append(label_rank(logits, batch_labels.to(dev)).cpu().numpy().astype(np.int16))
        label = np.concatenate(labels)
        return {"index": np.arange(len(label)), "label": label, "top5": np.concatenate(tops),
                "rank": np.concatenate(ranks)}
    return cached(run, "predictions", {"split": "val", "weights": "checkpoint"}, compute, force)


RANKS = {None: "rank", "clean": "clean_rank", "adv": "adv_rank"}


def correct(result, k=1, when=None):
    """Per-image top-k correctness (bool (n,)): the label's rank is below k, ties counting against the label as
    in the trainer. result: a predictions dict (when=None: its 'rank'), or an attack's per-image arrays with
    when='clean' (before the attack: 'clean_rank') or 'adv' (after it: 'adv_rank')."""
    if when not in RANKS:
        raise ValueError(f"when must be None (predictions), 'clean' or 'adv' (an attack's per-image arrays), "
                         f"got {when!r}")
    return result[RANKS[when]] < k


def attacked_indices(run, images):
    """Validation-set indices of the `images` evenly spaced images an attack evaluates (all when None), spread
    over the images the run's predictions cover (the first `val_batches` batches in a capped run)."""
    return np.asarray(data.evenly_spaced(_val_size(run), images))


def attack_evaluation(run, attack, images=None, steps=None, device="auto", force=False, batch_size=None):
    """`attacks.evaluate_over_steps` of the run's final model on `images` evenly spaced validation images.

    attack: a PGDAttack or AutoPGD; steps: the step counts to measure (default: attack.num_steps only); images: how
    many validation images (None: all); batch_size: images per attacked batch (None: the run's val_batch_size).
    Returns {k: summary dict with 'per_image' arrays and 'index'}.
    """
    steps = sorted(set(steps or [attack.num_steps]))
    settings = {"attack": attack.settings(), "steps": steps, "images": images,
                **({"batch_size": batch_size} if batch_size else {})}  # APGD's random starts depend on the batch

    def compute():
        val_set, transform = study.val_data(run.config)
        loader = attacks.subset_loader(val_set, images, batch_size=batch_size or run.config["val_batch_size"],
                                       within=_val_size(run))
        with _final_model(run, device) as (dev, model):
            if getattr(attack, "random_start", False):  # PGD's random start draws from the global RNG
                torch.manual_seed(run.config["seed"])
            results = attacks.evaluate_over_steps(model, loader, attack, steps, transform=transform, device=dev)
        return {"index": attacked_indices(run, images), **{str(k): r["per_image"] for k, r in results.items()}}

    stored = cached(run, "attack", settings, compute, force)
    return {k: {**attacks.summarise(stored[str(k)]), "per_image": stored[str(k)], "index": stored["index"]}
            for k in steps}


def under_attack(run, attack, images=None, device="auto", force=False, batch_size=None):
    """attack_evaluation at the attack's own number of steps: one summary dict with per-image arrays."""
    return attack_evaluation(run, attack, images, device=device, force=force, batch_size=batch_size)[attack.num_steps]


def strong_attacks(run, settings, images=None, device="auto", force=False):
    """The run's final model under each stronger attack (lib.attacks.apgd: APGD-CE and targeted APGD-DLR) on
    `images` evenly spaced validation images, in batches of STRONG_BATCH. settings: {num_steps, restarts,
    target_classes, epsilon} (pixel units; experiments.attack_settings(...)['strong']); the starting points are
    drawn from the run's seed. Returns {loss: under_attack summary with per-image arrays}, loss in LOSSES."""
    return {loss: under_attack(run, attacks.AutoPGD(loss, seed=run.config["seed"], **settings), images, device,
                               force, STRONG_BATCH) for loss in LOSSES}


def robust_to_all(results):
    """Per-image top-1 correctness (bool (n,)) under the worst case of several attacks: an image counts only
    when the model classifies it correctly under every one. results: under_attack summaries on the same images."""
    first = results[0]["index"]
    if any(not np.array_equal(r["index"], first) for r in results):
        raise ValueError("robust_to_all needs attack results on the same images (the same `images` count)")
    return np.logical_and.reduce([correct(r["per_image"], when="adv") for r in results])


def attack_comparison(run, settings, device="auto"):
    """Per-image top-1 correctness (bool (n,)) of the run's final model on the stronger attacks' images
    (settings: experiments.attack_settings(...), its 'strong_images'): 'clean', the default PGD as 'PGD-<steps>',
    each stronger attack by name (APGD-CE, APGD-T (DLR)) and 'worst case' (robust_to_all of them all), in that
    order. The default attack's cached evaluation on settings['images'] is re-used when it covers these images."""
    images, default = settings["strong_images"], attacks.PGDAttack(**settings["default"])
    strong = strong_attacks(run, settings["strong"], images, device)
    index = next(iter(strong.values()))["index"]
    pgd = under_attack(run, default, settings["images"], device)
    if not np.isin(index, pgd["index"]).all():
        pgd = under_attack(run, default, images, device)
    rows = np.searchsorted(pgd["index"], index)
    pgd = {**pgd, "index": index, "per_image": {key: value[rows] for key, value in pgd["per_image"].items()}}
    named = {f"PGD-{default.num_steps}": pgd, **{attacks.AutoPGD(loss).name: strong[loss] for loss in LOSSES}}
    return {"clean": correct(pgd["per_image"], when="clean"),
            **{name: correct(result["per_image"], when="adv") for name, result in named.items()},
            "worst case": robust_to_all(list(named.values()))}


def robustness_curve(run, epsilons, images=None, num_steps=10, device="auto", force=False):
    """Attacks of growing epsilon (pixel units): PGD-`num_steps` with step epsilon / num_steps, targeted at the
    least-likely class, on min(images, CURVE_IMAGES) images. Returns one summary dict per epsilon, with 'epsilon'.
    """
    images = _curve_images(run, images)
    rows = []
    for epsilon in epsilons:
        attack = attacks.PGDAttack(num_steps, step_size=epsilon / num_steps, epsilon=epsilon)
        rows.append({"epsilon": epsilon, **under_attack(run, attack, images, device, force)})
    return rows


def steps_grid(run, default, grid_steps, grid_scales, images=None, device="auto", force=False):
    """PGD with the default attack's step size and target, `grid_steps` steps x epsilon = scale x the default's.

    One run of the longest attack per epsilon measures every shorter one (attacks.evaluate_over_steps), on
    min(images, CURVE_IMAGES) images. Returns rows: steps, scale, epsilon (pixel units), and the summary.
    """
    images = _curve_images(run, images)
    rows = []
    for scale in grid_scales:
        attack = attacks.PGDAttack(max(grid_steps), step_size=default.step_size, epsilon=scale * default.epsilon)
        by_steps = attack_evaluation(run, attack, images, grid_steps, device, force)
        rows += [{"steps": k, "scale": scale, "epsilon": attack.epsilon, **r} for k, r in by_steps.items()]
    return rows


def adversarial_examples(run, attack, images=None, count=6, device="auto", force=False):
    """`count` evenly spaced images of the attacked set, their adversarial versions and the predictions.

    Returns {'index', 'label', 'clean_pred', 'adv_pred', 'target': (count,), 'images', 'adversarial':
    float32 (count, 3, H, W) in [0, 1]}.
    """
    settings = {"attack": attack.settings(), "images": images, "count": count}

    def compute():
        val_set, transform = study.val_data(run.config)
        attacked = attacked_indices(run, images)
        picks = attacked[np.linspace(0, len(attacked) - 1, count).round().astype(int)]
        with _final_model(run, device) as (dev, model):
            x = transform.to(dev)(torch.stack([val_set[int(i)][0] for i in picks]).to(dev))
            result = attack.perturb(model, x)
            with torch.no_grad():
                adv_pred = model(result.adversarial).argmax(1)
        as_numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return {"index": picks, "label": np.array([int(val_set[int(i)][1]) for i in picks]),
                "clean_pred": as_numpy(result.clean_logits.argmax(1)), "adv_pred": as_numpy(adv_pred),
                "target": as_numpy(result.targets), "images": as_numpy(x).astype(np.float32),
                "adversarial": as_numpy(result.adversarial).astype(np.float32)}
    return cached(run, "examples", settings, compute, force)


def vit_settings(cfg):
    """The architecture of the ViT a run configuration builds, read from the built model: image_size,
    patch_size (pixels), embed_dim, depth, num_heads, window_size (tokens per side of the windowed blocks),
    epochs, grid (token rows, columns), tokens, windows (per image), windowed (indices of the windowed blocks),
    mlp_ratio, drop_path (the last block's rate) and num_classes."""
    model = study.build_model(cfg)
    blocks = model.blocks
    used = dict(image_size=cfg["image_size"], patch_size=model.patch_embed.patch_size,
                embed_dim=model.patch_embed.proj.out_channels, depth=len(blocks), num_heads=blocks[0].attn.num_heads,
                window_size=max(block.window_size for block in blocks), epochs=cfg["epochs"])
    grid = vit.token_grid(used["image_size"], used["patch_size"])
    windows = math.ceil(grid[0] / used["window_size"]) * math.ceil(grid[1] / used["window_size"])
    return dict(used, grid=grid, tokens=grid[0] * grid[1], windows=windows,
                windowed=[i for i, block in enumerate(blocks) if block.window_size],
                mlp_ratio=blocks[0].mlp[0].out_features // used["embed_dim"], drop_path=blocks[-1].drop_path.drop_prob,
                num_classes=model.head.out_features)


def _curve_images(run, images):
    val_size = _val_size(run)
    return min(images or val_size, CURVE_IMAGES, val_size)


def _val_size(run):
    """Number of validation images of a run (from its cached predictions)."""
    return len(predictions(run)["label"])

"""lib/attacks/evaluation.py: accuracy and success under attack against a manual count (CPU, seconds)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from lib.attacks.evaluation import evaluate_over_steps, evaluate_under_attack, subset_loader
from lib.attacks.pgd import PGDAttack
from tests.attacks.toy_models import prototype_data, random_images


class ToPixels(nn.Module):
    """uint8 (B, 3, H, W) -> float in [0, 1]."""

    def forward(self, x):
        return x.float() / 255


def manual_metrics(model, batches, attack):
    """The numbers evaluate_under_attack should report, computed naively image by image."""
    rows = []
    for images, labels in batches:
        x = images.float() / 255
        result = attack.perturb(model, x, labels)
        adv, targets = result.adversarial, result.targets
        with torch.no_grad():
            clean, attacked = model(x), model(adv)
        for i in range(len(labels)):
            delta = adv[i] - x[i]
            rows.append(dict(
                clean1=clean[i].argmax() == labels[i], adv1=attacked[i].argmax() == labels[i],
                clean5=labels[i] in clean[i].argsort(descending=True)[:5],
                adv5=labels[i] in attacked[i].argsort(descending=True)[:5],
                hit=(attacked[i].argmax() == targets[i]) if targets is not None else attacked[i].argmax() != labels[i],
                linf=delta.abs().max().item(), l2=delta.pow(2).sum().sqrt().item(), sq=delta.pow(2).mean().item()))
    mean = lambda key: sum(float(r[key]) for r in rows) / len(rows)  # noqa: E731
    eligible = rows if attack.targeted else [r for r in rows if r["clean1"]]
    hits = sum(int(r["hit"]) for r in eligible)
    return {"clean_acc1": 100 * mean("clean1"), "clean_acc5": 100 * mean("clean5"),
            "adv_acc1": 100 * mean("adv1"), "adv_acc5": 100 * mean("adv5"), "success_rate": 100 * hits / len(eligible),
            "successes": hits, "success_images": len(eligible),
            "linf": mean("linf"), "l2": mean("l2"), "psnr": -10 * math.log10(mean("sq")), "num_images": len(rows)}


@pytest.mark.parametrize("targeted", ["least_likely", None])
def test_evaluate_under_attack_matches_a_manual_count(trained, targeted):
    images, labels = prototype_data(36, seed=3)
    batches = [((images[i:i + 12] * 255).round().to(torch.uint8), labels[i:i + 12]) for i in (0, 12, 24)]
    attack = PGDAttack(num_steps=3, step_size=0.08, epsilon=0.2, targeted=targeted)
    was_training = trained.train().training
    got = evaluate_under_attack(trained, batches, attack, transform=ToPixels(), max_batches=2)
    assert trained.training == was_training
    trained.eval()
    expected = manual_metrics(trained, batches[:2], attack)
    per_image = got.pop("per_image")
    assert got.keys() == expected.keys() and got["num_images"] == 24
    assert len(per_image["label"]) == 24 and per_image["adv_top5"].shape == (24, 5)
    assert (per_image["target"] >= 0).all() == bool(targeted)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    assert got["clean_acc1"] > got["adv_acc1"]
    if targeted:  # the least-likely target pushes labels out of the top 5: top-5 counting is exercised
        assert got["adv_acc5"] < 100


def assert_same_evaluation(got, expected):
    """Equal summaries and equal per-image arrays."""
    assert {k: v for k, v in got.items() if k != "per_image"} == {
        k: v for k, v in expected.items() if k != "per_image"}
    assert got["per_image"].keys() == expected["per_image"].keys()
    for key, values in got["per_image"].items():
        np.testing.assert_array_equal(values, expected["per_image"][key], err_msg=key)


@pytest.mark.parametrize("random_start", [False, True])
def test_evaluate_over_steps_equals_separate_shorter_attacks(trained, random_start):
    images, labels = prototype_data(48, seed=4)
    batches = [(images[i:i + 16], labels[i:i + 16]) for i in (0, 16, 32)]
    settings = dict(step_size=0.05, epsilon=0.3, random_start=random_start)
    torch.manual_seed(0)
    got = evaluate_over_steps(trained, batches, PGDAttack(num_steps=6, **settings), steps=[6, 1, 3])
    assert list(got) == [1, 3, 6]
    for k in (1, 3, 6):
        torch.manual_seed(0)
        assert_same_evaluation(got[k], evaluate_under_attack(trained, batches, PGDAttack(num_steps=k, **settings)))
    assert got[1]["adv_acc1"] > got[6]["adv_acc1"]  # a longer attack does more damage here


@pytest.mark.parametrize("steps", [[0], [7], [], [2.0], [True]])
def test_evaluate_over_steps_rejects_steps_outside_the_run(trained, steps):
    with pytest.raises(ValueError, match=r"step counts in 1\.\.6"):
        evaluate_over_steps(trained, [prototype_data(4, seed=5)], PGDAttack(num_steps=6), steps)


def test_subset_loader_picks_the_same_evenly_spaced_images():
    dataset = torch.utils.data.TensorDataset(torch.arange(100), torch.arange(100))
    picked = torch.cat([x for x, _ in subset_loader(dataset, 5, batch_size=2)])
    assert picked.tolist() == [0, 25, 50, 74, 99]
    assert torch.cat([x for x, _ in subset_loader(dataset, None, batch_size=30)]).tolist() == list(range(100))
    assert len(subset_loader(dataset, 1000).dataset) == 100
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_images must be a positive integer"):
            subset_loader(dataset, bad)


def test_evaluate_rejects_an_empty_loader(trained):
    with pytest.raises(ValueError, match="no images"):
        evaluate_under_attack(trained, [], PGDAttack())


def test_a_tie_counts_against_the_label_as_in_the_trainer():
    """Constant logits tie every class, so no label is in the top 1 or top 5 (`lib.training.correct_topk`)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6))
    nn.init.zeros_(model[1].weight), nn.init.zeros_(model[1].bias)
    got = evaluate_under_attack(model, [(random_images(), torch.tensor([0, 1, 2, 3]))], PGDAttack(num_steps=1))
    assert (got["clean_acc1"], got["clean_acc5"], got["adv_acc1"], got["adv_acc5"]) == (0, 0, 0, 0)

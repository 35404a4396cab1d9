"""PGD attack, evaluation under attack and the adversarial-training hook (CPU, seconds)."""
import math

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from lib.attacks.adversarial_training import AdversarialTraining
from lib.attacks.evaluation import evaluate_over_steps, evaluate_under_attack, subset_loader
from lib.attacks.pgd import PGDAttack
from lib.data.transforms import Normalize


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: one thread is faster and steadier on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cnn(num_classes=6):
    """Random CNN with BatchNorm and Dropout: input (B, 3, H, W) in [0, 1] -> logits."""
    return nn.Sequential(Normalize(), nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def mlp(num_classes):
    return nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, num_classes))


def prototype_data(n, seed, num_classes=10):
    """Separable task: each class is a fixed random +-1 pattern of strength 0.2 plus noise. (n, 3, 8, 8)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, 2, (num_classes, 3, 8, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = 0.5 + 0.2 * prototypes[labels] + 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    return images.clamp(0, 1), labels


def robust_vs_fragile_data(n, seed):
    """Two classes told apart by a strong 4x4 patch (+-0.3, noisy) and a weak shift (+-0.04) of every pixel.

    The weak shift is the easier feature but an epsilon of 0.12 erases it; the patch survives.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * labels - 1).float()
    images = 0.5 + 0.04 * sign.view(n, 1, 1, 1) + 0.05 * torch.randn(n, 3, 8, 8, generator=g)
    images[:, 0, :4, :4] = 0.5 + 0.3 * sign.view(n, 1, 1) + 0.15 * torch.randn(n, 4, 4, generator=g)
    return images.clamp(0, 1), labels


def train(model, data, steps, hook=None, lr=1e-2):
    """Adam on random batches of 128; `hook` replaces each batch (adversarial training)."""
    images, labels = data
    optimizer = torch.optim.Adam(model.parameters(), lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(images), (128,), generator=g)
        x, y = images[idx], labels[idx]
        if hook is not None:
            x, _ = hook(model, x, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return train(mlp(10), prototype_data(1024, seed=1), steps=150)


def random_images(n=4, size=8, seed=0):
    """Uniform pixels with the extremes 0 and 1 present."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    return x


@pytest.mark.parametrize("epsilon", [0.0, 2 / 255, 8 / 255, 0.25])
@pytest.mark.parametrize("targeted", ["least_likely", None])
@pytest.mark.parametrize("random_start", [False, True])
def test_output_stays_in_the_ball_and_in_pixel_range(epsilon, targeted, random_start):
    torch.manual_seed(0)
    model, x = tiny_cnn(), random_images()
    labels = torch.randint(0, 6, (4,))
    attack = PGDAttack(num_steps=5, step_size=epsilon / 3, epsilon=epsilon, targeted=targeted,
                       random_start=random_start)
    adv = attack.perturb(model, x, labels).adversarial
    assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
    assert (adv - x).abs().max() <= epsilon + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    if epsilon > 0:
        assert (adv - x).abs().max() > epsilon / 2


def test_untargeted_attack_raises_the_loss():
    torch.manual_seed(0)
    model, x = tiny_cnn().eval(), random_images(16)
    labels = torch.randint(0, 6, (16,))
    result = PGDAttack(num_steps=5, step_size=1 / 255, epsilon=4 / 255, targeted=None).perturb(model, x, labels)
    assert result.targets is None and result.clean_logits.shape == (16, 6)
    adv = result.adversarial
    with torch.no_grad():
        assert F.cross_entropy(model(adv), labels) > F.cross_entropy(model(x), labels)


def test_targeted_attack_reaches_the_least_likely_class(trained):
    images, labels = prototype_data(200, seed=2)
    with torch.no_grad():
        clean = trained(images)
    assert (clean.argmax(1) == labels).float().mean() > 0.95
    attack = PGDAttack(num_steps=20, step_size=0.05, epsilon=0.4)
    result = attack.perturb(trained, images)
    assert torch.equal(result.targets, clean.argmin(1))
    assert torch.allclose(result.clean_logits, clean, atol=1e-5)
    with torch.no_grad():
        success = (trained(result.adversarial).argmax(1) == result.targets).float().mean()
    assert success > 0.9


def mixed_mode_model():
    """BatchNorm in train mode, Dropout in eval mode, the first conv frozen, a stale .grad on the head."""
    model = tiny_cnn().train()
    model[4].eval()
    model[1].requires_grad_(False)
    model[7].weight.grad = torch.ones_like(model[7].weight)
    return model


def snapshot(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])


def test_modes_flags_and_grads_are_restored():
    torch.manual_seed(0)
    model = mixed_mode_model()
    before = snapshot(model)
    seen = []
    model.register_forward_pre_hook(
        lambda m, _: seen.append((any(s.training for s in m.modules()), any(p.requires_grad for p in m.parameters()))))
    PGDAttack(num_steps=3, step_size=1 / 255, epsilon=4 / 255).perturb(model, random_images())
    assert seen == [(False, False)] * 3  # crafted in eval mode with frozen parameters
    assert snapshot(model) == before
    assert torch.equal(model[7].weight.grad, torch.ones_like(model[7].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "7.weight")


def test_modes_are_restored_when_the_model_fails():
    model = mixed_mode_model()
    before = snapshot(model)

    def fail(module, inputs):
        raise RuntimeError("boom")
    model[7].register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        PGDAttack().perturb(model, random_images())
    assert snapshot(model) == before


def test_random_start_is_reproducible_with_a_seed():
    model, x = tiny_cnn(), random_images()
    attack = PGDAttack(num_steps=2, step_size=1 / 255, epsilon=8 / 255, random_start=True)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(attack.perturb(model, x).adversarial)
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_from_normalized_converts_with_the_mean_std():
    attack = PGDAttack.from_normalized(num_steps=10, step_size=0.01, epsilon=0.1)
    assert attack.num_steps == 10 and attack.targeted == "least_likely"
    assert attack.epsilon == pytest.approx(0.1 * 0.226) and attack.step_size == pytest.approx(0.01 * 0.226)
    assert "epsilon=5.76/255" in repr(attack) and "num_steps=10" in repr(attack)


@pytest.mark.parametrize("kwargs, message", [
    (dict(epsilon=-0.1), "epsilon must be >= 0"),
    (dict(epsilon=math.nan), "epsilon must be a finite number"),
    (dict(step_size=-1e-3), "step_size must be >= 0"),
    (dict(num_steps=0), "num_steps must be an integer >= 1"),
    (dict(num_steps=2.5), "num_steps must be an integer >= 1"),
    (dict(targeted="most_likely"), "targeted must be one of"),
])
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PGDAttack(**kwargs)


@pytest.mark.parametrize("images, labels, message", [
    (random_images() * 2, None, r"pixel values in \[0, 1\]"),
    ((random_images() * 255).to(torch.uint8), None, "float tensor"),
    (torch.rand(4, 1, 8, 8), None, r"shape \(B, 3, H, W\)"),
    (torch.rand(3, 8, 8), None, r"shape \(B, 3, H, W\)"),
    (random_images(), torch.zeros(5, dtype=torch.long), r"labels must be an integer tensor of shape \(4,\)"),
    (random_images(), torch.zeros(4), r"labels must be an integer tensor"),
])
def test_bad_inputs_are_rejected(images, labels, message):
    with pytest.raises(ValueError, match=message):
        PGDAttack().perturb(tiny_cnn(), images, labels)


def test_untargeted_needs_labels_and_training_needs_untargeted():
    with pytest.raises(ValueError, match="perturb\\(model, images, labels\\)"):
        PGDAttack(targeted=None).perturb(tiny_cnn(), random_images())
    with pytest.raises(ValueError, match="untargeted attack"):
        AdversarialTraining(PGDAttack(targeted="least_likely"))


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


def test_on_step_sees_every_step_and_the_last_is_the_result():
    torch.manual_seed(0)
    model, x = tiny_cnn(), random_images()
    attack = PGDAttack(num_steps=4, step_size=1 / 255, epsilon=3 / 255)
    seen = []
    adv = attack.perturb(model, x, on_step=lambda k, xk: seen.append((k, xk.clone(), xk.requires_grad))).adversarial
    assert [k for k, _, _ in seen] == [1, 2, 3, 4] and not any(grad for _, _, grad in seen)
    assert torch.equal(seen[-1][1], adv)
    for k, xk, _ in seen:
        assert (xk - x).abs().max() <= min(k / 255, 3 / 255) + 1e-6


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


def test_adversarial_training_hook_keeps_batchnorm_and_counts_clean_correct():
    torch.manual_seed(0)
    model, x = tiny_cnn().train(), random_images(16)
    labels = torch.randint(0, 6, (16,))
    bn = model[2]
    stats = [t.clone() for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
    hook = AdversarialTraining()
    assert repr(hook.attack) == ("PGDAttack(num_steps=4, step_size=2/255, epsilon=8/255, targeted=None, "
                                 "random_start=False)")
    adv, logs = hook(model, x, labels)
    for before, after in zip(stats, (bn.running_mean, bn.running_var, bn.num_batches_tracked)):
        assert torch.equal(before, after)
    assert all(m.training for m in model.modules())
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        expected = (model.eval()(x).argmax(1) == labels).sum()
    assert logs["clean_correct"].item() == expected.item()


def test_adversarial_training_never_waits_for_the_device(monkeypatch):
    """The hook runs on every training step: it skips the pixel-range check (aminmax, read on the host), the one
    check of perturb that waits for the device; a plain perturb call still makes it."""
    model, x, labels = tiny_cnn(), random_images(), torch.tensor([0, 1, 2, 3])

    def no_host_read(*args):
        raise AssertionError("read on the host")
    monkeypatch.setattr(torch, "aminmax", no_host_read)
    adv, logs = AdversarialTraining()(model, x, labels)
    assert adv.shape == x.shape and isinstance(logs["clean_correct"], torch.Tensor)
    with pytest.raises(AssertionError, match="read on the host"):
        PGDAttack(targeted=None).perturb(model, x, labels)


def test_adversarial_training_hook_counts_tied_logits_against_the_label():
    """bf16 crafting ties logits often: the clean count follows the meters' rule, not argmax's first index."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6))
    nn.init.zeros_(model[1].weight), nn.init.zeros_(model[1].bias)
    _, logs = AdversarialTraining()(model, random_images(), torch.tensor([0, 0, 0, 0]))
    assert logs["clean_correct"].item() == 0  # argmax would pick class 0 for every image and count 4


def test_adversarial_training_beats_plain_training_under_attack():
    attack = PGDAttack(num_steps=5, step_size=0.04, epsilon=0.12, targeted=None)
    data, test = robust_vs_fragile_data(2048, seed=1), [robust_vs_fragile_data(512, seed=2)]
    results = {}
    for name, hook in (("plain", None), ("adversarial", AdversarialTraining(attack))):
        torch.manual_seed(0)
        results[name] = evaluate_under_attack(train(mlp(2), data, steps=50, hook=hook), test, attack)
    assert results["plain"]["clean_acc1"] > 95 and results["adversarial"]["clean_acc1"] > 90
    assert results["adversarial"]["adv_acc1"] > results["plain"]["adv_acc1"] + 40

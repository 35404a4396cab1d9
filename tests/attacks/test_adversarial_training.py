"""lib/attacks/adversarial_training.py: the adversarial-training input hook (CPU, seconds)."""
import pytest
import torch
from torch import nn

from lib.attacks.adversarial_training import AdversarialTraining
from lib.attacks.evaluation import evaluate_under_attack
from lib.attacks.pgd import PGDAttack
from tests.attacks.toy_models import mlp, random_images, tiny_cnn, train


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


def test_adversarial_training_hook_keeps_batchnorm_and_counts_clean_correct():
    torch.manual_seed(0)
    model, x = tiny_cnn().train(), random_images(16)
    labels = torch.randint(0, 6, (16,))
    bn = model[2]
    stats = [t.clone() for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
    hook = AdversarialTraining()
    assert repr(hook.attack) == ("PGDAttack(num_steps=4, step_size=2/255, epsilon=8/255, targeted=None, "
                                 "random_start=False)")
    adv, logs = hook(model, x, labels, 0.0)
    for before, after in zip(stats, (bn.running_mean, bn.running_var, bn.num_batches_tracked)):
        assert torch.equal(before, after)
    assert all(m.training for m in model.modules())
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        expected = (model.eval()(x).argmax(1) == labels).sum()
    assert logs["clean_correct"].item() == expected.item()


def test_the_epsilon_warm_up_grows_the_attack_then_keeps_it():
    attack = PGDAttack(num_steps=3, step_size=2 / 255, epsilon=8 / 255, targeted=None)
    hook = AdversarialTraining(attack, ramp_epochs=2)
    assert hook.attack_at(0).epsilon == 0
    half = hook.attack_at(1)
    assert (half.num_steps, half.step_size, half.epsilon, half.targeted) == (3, pytest.approx(1 / 255),
                                                                             pytest.approx(4 / 255), None)
    assert hook.attack_at(2) is attack and hook.attack_at(7.5) is attack
    assert AdversarialTraining(attack).attack_at(0) is attack
    assert repr(hook).endswith("ramp_epochs=2)")
    model, x, labels = tiny_cnn(), random_images(), torch.tensor([0, 1, 2, 3])
    early, _ = hook(model, x, labels, 0.25)
    late, _ = hook(model, x, labels, 3)
    assert 0 < (early - x).abs().max() <= 1 / 255 + 1e-6
    assert (late - x).abs().max() > 2 / 255


@pytest.mark.parametrize("ramp", [-1, True, float("nan"), "1"])
def test_a_bad_epsilon_warm_up_is_refused(ramp):
    with pytest.raises(ValueError, match="ramp_epochs must be a number of epochs >= 0"):
        AdversarialTraining(ramp_epochs=ramp)


def test_adversarial_training_never_waits_for_the_device(monkeypatch):
    """The hook runs on every training step: it skips the pixel-range check (aminmax, read on the host), the one
    check of perturb that waits for the device; a plain perturb call still makes it."""
    model, x, labels = tiny_cnn(), random_images(), torch.tensor([0, 1, 2, 3])

    def no_host_read(*args):
        raise AssertionError("read on the host")
    monkeypatch.setattr(torch, "aminmax", no_host_read)
    adv, logs = AdversarialTraining()(model, x, labels, 0.0)
    assert adv.shape == x.shape and isinstance(logs["clean_correct"], torch.Tensor)
    with pytest.raises(AssertionError, match="read on the host"):
        PGDAttack(targeted=None).perturb(model, x, labels)


def test_adversarial_training_hook_counts_tied_logits_against_the_label():
    """bf16 crafting ties logits often: the clean count follows the meters' rule, not argmax's first index."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6))
    nn.init.zeros_(model[1].weight), nn.init.zeros_(model[1].bias)
    _, logs = AdversarialTraining()(model, random_images(), torch.tensor([0, 0, 0, 0]), 0.0)
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

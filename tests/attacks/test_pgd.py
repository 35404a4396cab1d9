"""lib/attacks/pgd.py: the PGD attack (CPU, seconds)."""
import math

import pytest
import torch
import torch.nn.functional as F

from lib.attacks.adversarial_training import AdversarialTraining
from lib.attacks.pgd import PGDAttack
from tests.attacks.toy_models import mixed_mode_model, prototype_data, random_images, snapshot, tiny_cnn


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

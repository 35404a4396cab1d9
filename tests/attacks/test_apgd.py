"""APGD (torchattacks) behind PGDAttack's interface: at least as strong as PGD, in the ball, harmless to the model."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lib.attacks.apgd import LOSSES, AutoPGD
from lib.attacks.evaluation import evaluate_under_attack
from lib.attacks.pgd import PGDAttack
from tests.attacks.toy_models import mixed_mode_model, mlp, prototype_data, random_images, snapshot, train


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return train(mlp(10), prototype_data(1024, seed=1), steps=150)


@pytest.mark.parametrize("loss", LOSSES)
def test_output_stays_in_the_ball_and_in_pixel_range(trained, loss):
    images, labels = prototype_data(64, seed=2)
    epsilon = 6 / 255
    adversarial = AutoPGD(loss, num_steps=5, epsilon=epsilon).perturb(trained, images, labels).adversarial
    assert adversarial.shape == images.shape
    assert (adversarial - images).abs().max() <= epsilon + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1


@pytest.mark.parametrize("loss", LOSSES)
def test_apgd_lowers_or_keeps_robust_accuracy_relative_to_pgd(trained, loss):
    """On the same images at the same epsilon, APGD leaves at most as many images correct as the reference's
    PGD-10 (least-likely target, step epsilon / 10), and the model is accurate to begin with."""
    images, labels = prototype_data(200, seed=3)
    loader = DataLoader(TensorDataset(images, labels), batch_size=50)
    epsilon = 0.1
    pgd = evaluate_under_attack(trained, loader, PGDAttack(10, step_size=epsilon / 10, epsilon=epsilon))
    apgd = evaluate_under_attack(trained, loader, AutoPGD(loss, num_steps=10, epsilon=epsilon))
    assert pgd["clean_acc1"] == apgd["clean_acc1"] > 90
    assert apgd["adv_acc1"] <= pgd["adv_acc1"]
    assert apgd["adv_acc1"] < apgd["clean_acc1"]  # the attack does something
    assert (apgd["per_image"]["target"] == -1).all()  # success is judged untargeted


@pytest.mark.parametrize("loss", LOSSES)
def test_modes_flags_grads_and_random_state_are_left_as_found(loss):
    torch.manual_seed(0)
    model = mixed_mode_model()
    before = snapshot(model)
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append(any(s.training for s in m.modules())))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    AutoPGD(loss, num_steps=3, epsilon=4 / 255, target_classes=2).perturb(
        model, random_images(), torch.tensor([0, 1, 2, 3]))
    assert seen and not any(seen)  # every forward pass in eval mode
    assert snapshot(model) == before
    assert torch.equal(model[7].weight.grad, torch.ones_like(model[7].weight))
    assert torch.equal(torch.rand(3), expected)  # torchattacks' re-seeding did not leak out


def test_same_seed_same_result_and_settings_name_the_attack(trained):
    images, labels = prototype_data(32, seed=4)
    first = AutoPGD("ce", num_steps=4, epsilon=0.05, seed=1).perturb(trained, images, labels).adversarial
    again = AutoPGD("ce", num_steps=4, epsilon=0.05, seed=1).perturb(trained, images, labels).adversarial
    assert torch.equal(first, again)
    assert AutoPGD("dlr-targeted").settings()["attack"] == "apgd-dlr-targeted"
    assert AutoPGD("ce").settings()["target_classes"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="dlr"), "loss must be one of"), (dict(num_steps=0), "num_steps must be an integer >= 1"),
    (dict(restarts=1.5), "restarts must be"), (dict(epsilon=float("nan")), "epsilon must be a finite number")])
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoPGD(**kwargs)

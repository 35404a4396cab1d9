"""Adversarial training: the trainer's input hook that replaces each clean batch by its PGD samples."""
import math

from lib.attacks.pgd import PGDAttack
from lib.training.metrics import label_rank


class AdversarialTraining:
    """Training-batch hook: replace a clean batch by untargeted PGD samples crafted on the fly.

    The trainer calls `adv_images, logs = hook(model, images, labels, progress)` on every training batch
    (progress: epochs of training done before it, a float) and trains on adv_images; at evaluation time it does not call it, so the model is the plain
    model. Crafting runs with BatchNorm/Dropout in eval mode (running statistics untouched) and
    the model's modes restored after. logs["clean_correct"] is a 0-d tensor: the clean top-1
    correct count of the batch (eval mode, the trainer's top-k rule), read off the first PGD step at no extra cost.
    Default attack: the reference PGD, 4 steps, step 2/255, epsilon 8/255, cross-entropy.
    Epsilon warm-up: with ramp_epochs > 0 the attack's epsilon and step size grow linearly from 0 at the start
    of training to the full attack's after ramp_epochs epochs (a model fine-tuned at the full epsilon at once
    can fall to chance before it learns to resist it); then they stay there.
    Precision: the samples are crafted in the training precision, since the trainer calls the hook
    inside its autocast (bf16 where the run's amp resolves to bf16, e.g. on a GPU; fp32 otherwise):
    they are training data for a model trained in that precision, and crafting costs most of an
    adversarial step. No step waits for the device: the batch's pixel range is not checked (the trainer's
    transforms clamp to [0, 1]) and the clean hits stay a device tensor. The evaluation attacks of notebooks
    03 and 04 run in IEEE fp32 (lib.report.analysis.PRECISION).
    """

    def __init__(self, attack=None, ramp_epochs=0):
        if isinstance(ramp_epochs, bool) or not isinstance(ramp_epochs, (int, float)) \
                or not math.isfinite(ramp_epochs) or ramp_epochs < 0:
            raise ValueError(f"ramp_epochs must be a number of epochs >= 0 (0: no epsilon warm-up), "
                             f"got {ramp_epochs!r}")
        if attack is None:
            attack = PGDAttack(num_steps=4, step_size=2 / 255, epsilon=8 / 255, targeted=None)
        if attack.targeted is not None:
            raise ValueError("adversarial training ascends the true labels' loss: "
                             "pass an untargeted attack, PGDAttack(..., targeted=None)")
        self.attack, self.ramp_epochs = attack, ramp_epochs

    def __repr__(self):
        ramp = f", ramp_epochs={self.ramp_epochs}" if self.ramp_epochs else ""
        return f"AdversarialTraining({self.attack!r}{ramp})"

    def attack_at(self, progress):
        """The attack crafting the batch after `progress` epochs of training: the full attack with epsilon and
        step size scaled by min(1, progress / ramp_epochs) (pixel units)."""
        if not self.ramp_epochs or progress >= self.ramp_epochs:
            return self.attack
        scale, attack = max(progress, 0) / self.ramp_epochs, self.attack
        return PGDAttack(attack.num_steps, attack.step_size * scale, attack.epsilon * scale, attack.targeted,
                         attack.random_start)

    def __call__(self, model, images, labels, progress):
        """images: float (B, 3, H, W) in [0, 1]; labels: long (B,); progress: epochs done (float)
        -> (adv_images, logs)."""
        result = self.attack_at(progress).perturb(model, images, labels, check_range=False)  # the trainer's transforms give [0, 1]
        correct = (label_rank(result.clean_logits, labels) < 1).sum()  # ties count against, as in the meters
        return result.adversarial, {"clean_correct": correct}

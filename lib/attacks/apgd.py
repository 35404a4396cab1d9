"""Stronger attacks beside the reference's PGD: AutoAttack's APGD components (Croce & Hein, 2020), from torchattacks.

APGD adapts its step size to the progress of the loss (starting at 2 epsilon, halving it when the loss stalls)
and keeps the best point found, so it finds adversarial samples that a fixed-step PGD misses (for example when
gradients are masked). Two variants, both L-infinity in pixel space:

- loss "ce": untargeted APGD ascending the cross-entropy of the true label;
- loss "dlr-targeted": APGD descending the targeted DLR loss (difference of logits ratio), aimed in turn at each
  of the `target_classes` classes that the model scores highest after the label; an image counts as broken as
  soon as one target misclassifies it.

`AutoPGD` wraps torchattacks' APGD / APGDT with the interface of PGDAttack that lib.attacks.evaluation uses
(perturb returning an AttackResult, num_steps, settings), so that it is evaluated and cached like the reference's
attack. Success is untargeted for both (the image is misclassified), as in AutoAttack.
"""
import torch

from lib.attacks.pgd import AttackResult, _check_images, _check_labels, _check_number, _unwrap, frozen_eval


LOSSES = ("ce", "dlr-targeted")
NAMES = {"ce": "APGD-CE", "dlr-targeted": "APGD-T (DLR)"}


class AutoPGD:
    """APGD in the L-infinity ball of radius `epsilon` (pixel units), `num_steps` iterations and `restarts` random
    restarts per image (per target class for "dlr-targeted"), the starting points drawn from `seed`.

    perturb leaves the model's modes, requires_grad flags and the global random state as it found them, and
    returns an AttackResult whose targets are None (success is untargeted).
    """

    def __init__(self, loss="ce", num_steps=100, epsilon=8 / 255, restarts=1, target_classes=9, seed=0):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        for name, value in (("num_steps", num_steps), ("restarts", restarts), ("target_classes", target_classes),
                            ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'seed' else 1}, got {value!r}")
        _check_number("epsilon", epsilon, 0)
        self.loss, self.num_steps, self.epsilon = loss, num_steps, float(epsilon)
        self.restarts, self.target_classes, self.seed = restarts, target_classes, seed

    @property
    def name(self):
        """'APGD-CE' or 'APGD-T (DLR)'."""
        return NAMES[self.loss]

    def settings(self):
        """The plain settings that determine the attack's result (a cache key)."""
        return {"attack": f"apgd-{self.loss}", "num_steps": self.num_steps, "epsilon": self.epsilon,
                "restarts": self.restarts, "target_classes": self.target_classes if self.loss != "ce" else None,
                "seed": self.seed}

    def __repr__(self):
        return (f"AutoPGD(loss={self.loss!r}, num_steps={self.num_steps}, epsilon={self.epsilon * 255:.3g}/255, "
                f"restarts={self.restarts}, target_classes={self.target_classes}, seed={self.seed})")

    def perturb(self, model, images, labels, on_step=None):
        """An AttackResult: adversarial images (B, 3, H, W) in [0, 1] within epsilon (L-inf) of `images` (float
        (B, 3, H, W) in [0, 1]; labels: long (B,)), for each image the first point found that the model
        misclassifies, else the image itself; the clean logits (B, num_classes); targets None.
        on_step(num_steps, x), if given, is called once with the result (APGD keeps its best point, not a path
        of iterates)."""
        _check_images(images)
        _check_labels(labels, images)
        if torch.is_inference_mode_enabled():
            raise ValueError("perturb needs gradients: call it outside torch.inference_mode()")
        model = _unwrap(model)
        images = images.detach()
        with frozen_eval(model), torch.enable_grad(), torch.random.fork_rng(devices=_cuda_devices(images)):
            adversarial = self._attack(model)(images, labels).detach()
            with torch.no_grad():
                clean_logits = model(images)
        if on_step is not None:
            on_step(self.num_steps, adversarial)
        return AttackResult(adversarial=adversarial, clean_logits=clean_logits, targets=None)

    def _attack(self, model):
        import torchattacks  # imported here: it loads scipy, which nothing else needs
        common = dict(norm="Linf", eps=self.epsilon, steps=self.num_steps, n_restarts=self.restarts, seed=self.seed)
        if self.loss == "ce":
            return torchattacks.APGD(model, loss="ce", **common)
        return torchattacks.APGDT(model, n_classes=self.target_classes + 1, **common)  # targets: n_classes - 1


def _cuda_devices(images):
    """The CUDA devices whose random state torchattacks re-seeds: the current one and the images'."""
    if not torch.cuda.is_available():
        return []
    own = [images.device.index if images.device.index is not None else torch.cuda.current_device()]
    return sorted({torch.cuda.current_device(), *(own if images.is_cuda else [])})

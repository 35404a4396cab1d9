"""PGD adversarial samples (pgd), the stronger APGD attacks (apgd), evaluation under attack (evaluation), and
adversarial training.
"""
from lib.attacks.pgd import (  # noqa: F401 (the package's API)
    PIXEL_PER_NORMALIZED, TARGET_MODES, frozen_eval, AttackResult, PGDAttack)
from lib.attacks.evaluation import (  # noqa: F401 (the package's API)
    evaluate_under_attack, evaluate_over_steps, successes, summarise, subset_loader)
from lib.attacks.adversarial_training import (  # noqa: F401 (the package's API)
    AdversarialTraining)
from lib.attacks.apgd import AutoPGD  # noqa: F401 (the package's API)

"""The claims ledger: every claim of the reference report (REFERENCE.md, "The reference report's claims"), with
the quantity this project measures for it, the test, and the threshold or margin that decides it.

Plain data, declared before any run is read: the thresholds below are constants with the reason for each value,
and lib.report.judge reads them from here only (tests/report/test_claims.py pins them, so a change shows in
review). How a claim is decided from its parts, and the three outcomes, is lib.report.rules.
"""
import dataclasses

# Thresholds and margins. Accuracies and gaps are proportions (0.01 = one point of top-1), ratios are plain
# factors, PSNR is in dB.
ACCURACY_MARGIN = 0.01  # one point of top-1: a smaller difference between models counts as none (the
#                         reference's closest compared models differ by 2.1 points: 46.31 vs 44.22)
FAR_MARGIN = 0.05  # "far more accurate": at least five points (five accuracy margins; the reference's gap is 35)
COST_MARGIN = 0.05  # a time or memory ratio within 5% of 1 is "about the same" (the round-to-round spread of a
#                     side-by-side step measurement on a shared 2-core CPU is of this order)
CLEAR_MEMORY = 1.10  # "clearly more memory": at least 10% more peak memory in a training step
SEVERAL = 2.0  # "several times the training time": at least twice
CLOSE_GAP = 0.05  # train and validation top-1 "close": within five points (the reference: 45.5 vs 46.3)
LARGE_GAP = 0.10  # a "large" train/validation gap: more than ten points (the reference: 88 vs 53)
CONVERGENCE_MARGIN = 0.10  # "converges more slowly": reaches CONVERGED of its final top-1 at least a tenth of
#                            its training later (as a share of its epochs) than the other model
CONVERGED = 0.9  # a run has converged once its validation top-1 reaches 90% of its final value
SAME_LOOKING_PSNR = 40.0  # dB: a change above this PSNR is commonly taken as imperceptible
CHANCE_TOP1, CHANCE_TOP5 = 0.01, 0.05  # a guess among MiniPlaces' 100 classes
LONGER_ATTACK = dict(steps=2, scale=0.5)  # "more iterations at a smaller epsilon": twice the default attack's steps
#                                           at half its epsilon (a cell of the notebook's steps x epsilon grid)

ALL_PROFILES = ("smoke", "sample", "cpu-full", "full")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the reference report. number and part as in REFERENCE.md; claim: in this project's words;
    where: where the reference makes it; quantity: what is measured; test: how it is decided; threshold: the
    declared threshold or margin in words; profiles: where it can be judged (elsewhere: `untestable` says why)."""
    number: int
    part: str
    claim: str
    where: str
    quantity: str
    test: str
    threshold: str
    profiles: tuple = ALL_PROFILES
    untestable: str = ""


PAIRED = ("paired on the same validation images (per image, correctness averaged over the training seeds), "
          "one-sided z tests")
ROUNDS = "the per-round ratios of a side-by-side step measurement, one-sided t tests on their logarithm"
TRAIN_VAL = "two proportions (train: the last epoch's augmented batches; validation), one-sided z tests"
EXACT = "a single measurement, compared with the threshold (no test: not in the Holm family)"

CLAIMS = (
    Claim(1, "convolution", "The custom convolution needs clearly more memory than nn.Conv2d.",
          "Part 1, custom vs native convolution", "peak memory of a SimpleNet training step, custom / native",
          EXACT, f"at least {CLEAR_MEMORY:.2f}x"),
    Claim(2, "convolution", "The custom convolution trains slower per step than nn.Conv2d.",
          "Part 1 (native: 6x the steps in 4.5x the time)", "time of a SimpleNet training step, custom / native",
          ROUNDS, f"above {1 + COST_MARGIN:.2f}x"),
    Claim(3, "convolution", "The improved CNN is more accurate than SimpleNet.", "Part 1, 46.31 vs 44.22 top-1",
          "validation top-1, ImprovedNet minus SimpleNet", PAIRED, f"more than {100 * ACCURACY_MARGIN:g} point"),
    Claim(4, "convolution", "SimpleNet under-fits: its train and validation top-1 are close.",
          "Part 1, train ~45.5% against val ~46.3%", "SimpleNet's last-epoch train minus validation top-1",
          TRAIN_VAL + " (equivalence: TOST)", f"within {100 * CLOSE_GAP:g} points"),
    Claim(5, "convolution", "Pretrained ResNet-18 fits the training set far better than it generalises and is "
          "the most accurate model.", "Part 1, train ~88% against val 53.26%",
          "ResNet-18's train minus validation top-1; its validation top-1 minus every other model's",
          TRAIN_VAL + "; " + PAIRED, f"gap above {100 * LARGE_GAP:g} points, ahead of each model by more than "
          f"{100 * ACCURACY_MARGIN:g} point", ("full",),
          "the claim is about ImageNet-pretrained weights, which offline runs cannot load"),
    Claim(6, "ViT", "The ViT's validation top-1 rises steadily, with no clear over-fitting.", "Part 2, findings",
          "validation top-1 of the windowed ViT: last minus first epoch, last minus best epoch",
          "two proportions on the same images (unpaired: conservative), one-sided z tests",
          f"a rise of more than {100 * ACCURACY_MARGIN:g} point, and less than {100 * ACCURACY_MARGIN:g} point "
          "below its best epoch"),
    Claim(7, "ViT", "The ViT converges more slowly than SimpleNet.", "Part 2, findings",
          f"share of its epochs after which a run first reaches {CONVERGED:.0%} of its final validation top-1, "
          "ViT minus SimpleNet", EXACT + "; each run keeps its own recipe, as in the reference",
          f"more than {CONVERGENCE_MARGIN:g}"),
    Claim(8, "ViT", "Window attention lowers compute and memory at accuracy close to global attention.",
          "Part 2, findings (O(T^2 D) -> O(W^2 T D))",
          "training-step time and peak memory, window / global; validation top-1, window minus global",
          ROUNDS + "; " + EXACT.split(" (")[0] + " for memory; " + PAIRED + " (equivalence: TOST)",
          f"time and memory below {1 - COST_MARGIN:.2f}x, top-1 within {100 * ACCURACY_MARGIN:g} point"),
    Claim(9, "ViT", "The ViT takes several times SimpleNet's training time.", "Part 2, findings",
          "time of a training step on the same batch, ViT / SimpleNet", ROUNDS, f"above {SEVERAL:g}x"),
    Claim(10, "ViT", "The ViT generalises better than SimpleNet (a smaller train/validation gap).",
          "Part 2, findings (also: converges more stably, shown by the curves, not tested)",
          "SimpleNet's train/validation top-1 gap minus the ViT's", TRAIN_VAL,
          f"more than {100 * ACCURACY_MARGIN:g} point"),
    Claim(11, "adversarial samples", "The targeted PGD attack collapses SimpleNet: top-1 and top-5 below chance.",
          "Part 3, 44.22 -> 0.23 top-1, 73.39 -> 4.77 top-5", "SimpleNet's top-1 and top-5 under the harness's "
          "default attack (PGD-10, epsilon 0.1 normalised = 5.76/255)", "exact one-sided binomial tests",
          f"below chance: {CHANCE_TOP1:.0%} top-1 and {CHANCE_TOP5:.0%} top-5"),
    Claim(12, "adversarial samples", "Adversarial samples look essentially the same as the originals.",
          "Part 3, figure", "per-image PSNR of the default attack's samples against the originals",
          "one-sided t test on the mean over images", f"above {SAME_LOOKING_PSNR:g} dB"),
    Claim(13, "adversarial samples", "More iterations at a smaller epsilon give a stronger attack with smaller "
          "changes.", "Part 3, question", f"{LONGER_ATTACK['steps']}x the default's steps at "
          f"{LONGER_ATTACK['scale']:g}x its epsilon against the default: SimpleNet's top-1 (default minus longer) "
          "and the per-image L2 change (longer minus default)",
          "paired on the same images, one-sided z tests", f"top-1 lower by more than {100 * ACCURACY_MARGIN:g} "
          "point, L2 change smaller"),
    Claim(14, "adversarial training", "AdvSimpleNet is far more accurate than SimpleNet under the same attack.",
          "Part 4, 35.53 vs 0.23 top-1", "top-1 under the default attack, AdvSimpleNet minus SimpleNet", PAIRED,
          f"more than {100 * FAR_MARGIN:g} points"),
    Claim(15, "adversarial training", "Adversarial training costs more training time.", "Part 4",
          "training time per image as logged by the trainer, AdvSimpleNet / SimpleNet", EXACT,
          f"above {1 + COST_MARGIN:.2f}x"),
)

BY_NUMBER = {claim.number: claim for claim in CLAIMS}


"""Verdicts on the reference report's findings follow from the numbers and the tests."""
import numpy as np

from lib.report import findings, stats
from lib.report.findings import NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED


def pair(only_a, only_b, both=10, neither=80):
    """paired_difference of two models with the given counts of discordant and concordant images."""
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    return stats.paired_difference(a, b)


def step(round_seconds, memory):
    """A model's entry of a side-by-side step measurement: one step time per round, and peak memory."""
    return {"round_seconds": list(round_seconds), "peak_memory_mb": memory}


def costs(native=((1.0, 1.0, 1.0), 100.0), custom=((1.5, 1.4, 1.6), 180.0)):
    return {"native": step(*native), "custom": step(*custom), "rounds": len(native[0]),
            "batch": 64, "image_size": 64, "device_name": "cpu"}


def test_custom_conv_needs_both_slower_and_more_memory():
    reproduced = findings.judge_custom_conv(costs())
    assert reproduced["verdict"] == REPRODUCED and "1.50x (1.40-1.60x over the rounds)" in reproduced["evidence"]
    same_memory = findings.judge_custom_conv(costs(custom=((1.5, 1.4, 1.6), 102.0)))
    assert same_memory["verdict"] == NOT_REPRODUCED and "memory about the same" in same_memory["evidence"]


def test_a_step_time_counts_only_when_every_round_agrees():
    """One round slowed by other work on the machine must not decide a verdict either way."""
    one_round_slower = findings.judge_custom_conv(costs(custom=((1.0, 1.02, 1.4), 180.0)))
    assert one_round_slower["verdict"] == NOT_REPRODUCED
    assert "time not the same in every round" in one_round_slower["evidence"]
    assert findings.time_word((1.0, 0.97, 1.04)) == "about the same"
    assert findings.time_word((0.8, 0.7, 0.9)) == "lower" and findings.time_word((1.3, 1.2, 1.4)) == "higher"


def test_better_needs_a_significant_difference_in_the_claimed_direction():
    assert findings.judge_better(pair(20, 2), "ImprovedNet", "SimpleNet", "x")["verdict"] == REPRODUCED
    unclear = findings.judge_better(pair(5, 1), "ImprovedNet", "SimpleNet", "x")  # McNemar p = 0.219
    assert unclear["verdict"] == NOT_REPRODUCED and "cannot tell the two apart" in unclear["evidence"]
    assert findings.judge_better(pair(2, 20), "ImprovedNet", "SimpleNet", "x")["verdict"] == NOT_REPRODUCED


def test_resnet_without_imagenet_weights_is_not_testable():
    pairs = {"SimpleNet": pair(30, 1), "ImprovedNet": pair(25, 2)}
    assert findings.judge_resnet_best(pairs, pretrained=False)["verdict"] == NOT_TESTABLE
    assert findings.judge_resnet_best(pairs, pretrained=True)["verdict"] == REPRODUCED
    pairs["ImprovedNet"] = pair(3, 2)
    assert findings.judge_resnet_best(pairs, pretrained=True)["verdict"] == NOT_REPRODUCED


def vit_costs(time_ratios, memory_ratio, flops_ratio=0.5):
    return {"window": {"attention_flops": flops_ratio, **step(time_ratios, memory_ratio)},
            "global": {"attention_flops": 1.0, **step([1.0] * len(time_ratios), 1.0)}, "batch": 64, "image_size": 64}


def test_window_attention_needs_saved_compute_and_no_accuracy_difference():
    faster = (0.8, 0.75, 0.85)
    assert findings.judge_window_attention(vit_costs(faster, 0.9), pair(4, 5))["verdict"] == REPRODUCED
    assert findings.judge_window_attention(vit_costs(faster, 1.0), pair(4, 5))["verdict"] == REPRODUCED
    assert findings.judge_window_attention(vit_costs((0.8, 0.9, 1.1), 1.0), pair(4, 5))["verdict"] == NOT_REPRODUCED
    assert findings.judge_window_attention(vit_costs((1.0,) * 3, 1.0), pair(4, 5))["verdict"] == NOT_REPRODUCED
    assert findings.judge_window_attention(vit_costs(faster, 0.9), pair(2, 30))["verdict"] == NOT_REPRODUCED


def test_collapse_needs_a_large_significant_drop():
    drop = pair(only_a=20, only_b=0, both=1, neither=79)  # clean right on 21, attacked on 1
    result = {"num_images": 100, "clean_acc1": 21.0, "adv_acc1": 1.0}
    assert findings.judge_collapse(result, drop)["verdict"] == REPRODUCED
    mild = {"num_images": 100, "clean_acc1": 21.0, "adv_acc1": 15.0}
    assert findings.judge_collapse(mild, pair(6, 0, both=15, neither=79))["verdict"] == NOT_REPRODUCED
    nothing = pair(0, 0, both=0, neither=100)
    zero = {"num_images": 100, "clean_acc1": 0.0, "adv_acc1": 0.0}
    assert findings.judge_collapse(zero, nothing)["verdict"] == NOT_TESTABLE


def test_adversarial_training_needs_robustness_and_a_clean_cost():
    assert findings.judge_adversarial_training(pair(30, 2), pair(2, 30))["verdict"] == REPRODUCED
    free = findings.judge_adversarial_training(pair(30, 2), pair(3, 4))
    assert free["verdict"] == NOT_REPRODUCED and "Without attack" in free["evidence"]
    assert findings.judge_adversarial_training(pair(3, 5), pair(2, 30))["verdict"] == NOT_REPRODUCED


def test_adversarial_training_keeps_no_accuracy_at_chance():
    """AdvSimpleNet ahead under attack, but right on 8 of 500 images (1.6% [0.8, 3.1]): not kept."""
    at_chance = findings.judge_adversarial_training(pair(8, 0, both=0, neither=492), pair(15, 35, 2, 448))
    assert at_chance["verdict"] == NOT_REPRODUCED
    assert "1.6% [0.8, 3.1] (n = 500), is not above chance (1% among 100 classes)" in at_chance["evidence"]
    above = findings.judge_adversarial_training(pair(30, 0, both=0, neither=470), pair(15, 35, 2, 448))
    assert above["verdict"] == REPRODUCED and "chance" not in above["evidence"]


def test_reference_cells_quote_the_reference_clean_or_attacked():
    assert findings.reference_cells("simplenet") == {"reference\nepochs": 60, "reference\ntop-1 (%)": 44.22,
                                                     "reference\ntop-5 (%)": 73.39}
    assert findings.reference_cells("advsimplenet", attacked=True) == {
        "reference\nepochs": None, "reference\ntop-1 (%)": 35.53, "reference\ntop-5 (%)": 63.75}
    assert list(findings.reference_cells("simplenet", attacked=True, epochs=False)) == [
        "reference\ntop-1 (%)", "reference\ntop-5 (%)"]


def test_over_seeds_a_difference_needs_every_seed_significant_in_one_direction():
    every_seed = [pair(20, 2), pair(25, 3), pair(18, 1)]
    assert findings.seed_direction(every_seed) == 1
    assert findings.seed_direction([pair(2, 20), pair(1, 25)]) == -1
    one_unclear = [pair(20, 2), pair(5, 1), pair(18, 1)]  # seed 2: McNemar p = 0.219
    assert findings.seed_direction(one_unclear) == 0
    assert findings.seed_direction([pair(20, 2), pair(2, 20)]) == 0  # significant both ways: no direction
    better = findings.judge_better(one_unclear, "ImprovedNet", "SimpleNet", "x")
    assert better["verdict"] == NOT_REPRODUCED
    assert "significant in 2 of 3 seeds, so no difference is called" in better["evidence"]
    assert findings.judge_better(every_seed, "ImprovedNet", "SimpleNet", "x")["verdict"] == REPRODUCED


def test_over_seeds_the_evidence_gives_the_mean_difference_with_its_interval_across_seeds():
    seeds = [pair(20, 2), pair(26, 2)]  # +18 and +24 points of 112 and 118 images: different n per pair is fine
    evidence = findings.describe_seeds(seeds, "A", "B")
    differences = [100 * p["difference"] for p in seeds]
    spread = stats.across_seeds([p["difference"] for p in seeds])
    assert spread["mean"] * 100 == np.mean(differences)
    half = 12.706204736174707 * np.std(differences, ddof=1) / np.sqrt(2)  # Student t, 1 df
    assert abs(100 * spread["high"] - (np.mean(differences) + half)) < 1e-9
    assert f"mean {np.mean(differences):+.1f} points" in evidence
    assert f"[{np.mean(differences) - half:+.1f}, {np.mean(differences) + half:+.1f}]" in evidence
    assert "A is more accurate in every seed" in evidence


def test_one_seed_is_todays_rule_with_the_caveat():
    assert findings.seed_direction(pair(20, 2)) == findings.seed_direction([pair(20, 2)]) == 1
    assert findings.describe_seeds([pair(5, 1)], "A", "B") == stats.describe_pair(pair(5, 1), "A", "B")
    assert "one seed each" in findings.rule_text(1)
    assert "every seed's exact McNemar test gives p < 0.05" in findings.rule_text(3)
    assert "2 degrees of freedom" in findings.rule_text(3)


def test_seeded_verdicts_of_window_attention_collapse_and_adversarial_training():
    faster = (0.8, 0.75, 0.85)
    mixed = [pair(4, 5), pair(20, 2)]  # seed 2 finds a difference, seed 1 does not: no difference is called
    assert findings.judge_window_attention(vit_costs(faster, 0.9), mixed)["verdict"] == REPRODUCED
    drop = pair(only_a=20, only_b=0, both=1, neither=79)
    collapsed, mild = {"num_images": 100, "clean_acc1": 21.0, "adv_acc1": 1.0}, {
        "num_images": 100, "clean_acc1": 21.0, "adv_acc1": 15.0}
    assert findings.judge_collapse([collapsed, collapsed], [drop, drop])["verdict"] == REPRODUCED
    both = findings.judge_collapse([collapsed, mild], [drop, pair(6, 0, both=15, neither=79)])
    assert both["verdict"] == NOT_REPRODUCED and "Seed 2: " in both["evidence"]
    verdict = findings.judge_adversarial_training([pair(30, 2), pair(28, 1)], [pair(2, 30), pair(3, 4)],
                                                  attack="the worst case of every attack")
    assert verdict["verdict"] == NOT_REPRODUCED and verdict["evidence"].startswith("Under the worst case")


def test_pgd_overstatement_is_said_only_when_every_seed_shows_it():
    overstated = findings.pgd_overstatement([pair(15, 0), pair(12, 0)], "AdvSimpleNet")
    assert overstated.startswith("PGD-10 overstated AdvSimpleNet's robustness")
    kept = findings.pgd_overstatement([pair(15, 0), pair(2, 0)], "AdvSimpleNet")
    assert kept.startswith("The strongest attack did not lower AdvSimpleNet's top-1 significantly")

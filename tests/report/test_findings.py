"""The reference's numbers, and the phrases on comparisons over seeds, step-time ratios and overstated robustness."""
import numpy as np

from lib.report import findings, stats


def pair(only_a, only_b, both=10, neither=80):
    """paired_difference of two models with the given counts of discordant and concordant images."""
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    return stats.paired_difference(a, b)





def test_reference_cells_quote_the_reference_clean_or_attacked():
    assert findings.reference_cells("simplenet") == {"reference\nepochs": 60, "reference\ntop-1 (%)": 44.22,
                                                     "reference\ntop-5 (%)": 73.39}
    assert findings.reference_cells("advsimplenet", attacked=True) == {
        "reference\nepochs": None, "reference\ntop-1 (%)": 35.53, "reference\ntop-5 (%)": 63.75}
    assert list(findings.reference_cells("simplenet", attacked=True, epochs=False)) == [
        "reference\ntop-1 (%)", "reference\ntop-5 (%)"]


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



def test_pgd_overstatement_is_said_only_when_every_seed_shows_it():
    overstated = findings.pgd_overstatement([pair(15, 0), pair(12, 0)], "AdvSimpleNet")
    assert overstated.startswith("PGD-10 overstated AdvSimpleNet's robustness")
    kept = findings.pgd_overstatement([pair(15, 0), pair(2, 0)], "AdvSimpleNet")
    assert kept.startswith("The strongest attack did not lower AdvSimpleNet's top-1 significantly")


def test_a_step_time_counts_only_when_every_round_agrees():
    assert findings.time_word((1.0, 0.97, 1.04)) == "about the same"
    assert findings.time_word((0.8, 0.7, 0.9)) == "lower" and findings.time_word((1.3, 1.2, 1.4)) == "higher"
    assert findings.time_word((1.0, 1.02, 1.4)) == "not the same in every round"
    assert findings.ratio_phrase((1.5, 1.4, 1.6)) == "1.50x (1.40-1.60x over the rounds)"


def test_over_seeds_a_difference_needs_every_seed_significant_in_one_direction():
    every_seed = [pair(20, 2), pair(25, 3), pair(18, 1)]
    assert findings.seed_direction(every_seed) == 1
    assert findings.seed_direction([pair(2, 20), pair(1, 25)]) == -1
    one_unclear = [pair(20, 2), pair(5, 1), pair(18, 1)]  # seed 2: McNemar p = 0.219
    assert findings.seed_direction(one_unclear) == 0
    assert findings.seed_direction([pair(20, 2), pair(2, 20)]) == 0  # significant both ways: no direction
    assert "significant in 2 of 3 seeds, so no difference is called" in findings.describe_seeds(one_unclear, "A", "B")

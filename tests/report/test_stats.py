"""Intervals and paired tests against values computed by hand."""
import math

import numpy as np
import pytest

from lib.report import stats


def test_wilson_7_of_100_by_hand():
    # p = 0.07, z^2 = 3.8415: centre (0.07 + 0.019207) / 1.038415 = 0.085906,
    # half 1.887458 * sqrt(0.000651 + 0.000096036) = 0.051588
    low, high = stats.wilson(7, 100)
    assert low == pytest.approx(0.034318, abs=2e-6)
    assert high == pytest.approx(0.137494, abs=2e-6)


def test_wilson_edges_stay_in_unit_interval():
    assert stats.wilson(0, 20)[0] == 0.0 and stats.wilson(0, 20)[1] == pytest.approx(0.16113, abs=1e-5)
    assert stats.wilson(20, 20)[1] == 1.0
    assert stats.wilson(0, 0) == (0.0, 1.0)


def test_wilson_sample_attack_size_meets_two_points():
    """1,500 images: the widest interval (p = 0.5) is +-2.5 points; at p <= 0.2 it is below +-2."""
    low, high = stats.wilson(300, 1500)
    assert (high - low) / 2 < 0.0205


def test_mcnemar_5_vs_1_by_hand():
    # 6 discordant pairs, X ~ Bin(6, 1/2): P(X <= 1) = (1 + 6) / 64; two-sided 14 / 64
    assert stats.mcnemar_exact(5, 1) == pytest.approx(0.21875)
    assert stats.mcnemar_exact(1, 5) == pytest.approx(0.21875)


def test_mcnemar_edges():
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact(10, 0) == pytest.approx(2 / 1024)


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.wilson(5, 3)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.mcnemar_exact(-1, 2)


def test_paired_difference_counts_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    b = np.array([1, 0, 0, 0, 0, 0, 1, 0, 0, 0], bool)
    pair = stats.paired_difference(a, b)
    assert (pair["b"], pair["c"], pair["n"]) == (5, 1, 10)
    assert pair["difference"] == pytest.approx(0.4)
    assert pair["p"] == pytest.approx(0.21875)
    assert pair["low"] < 0.4 < pair["high"]
    assert -1 <= pair["low"] and pair["high"] <= 1


def test_paired_interval_of_equal_models_is_symmetric_around_zero():
    a = np.array([1, 0] * 50, bool)
    pair = stats.paired_difference(a, a)
    assert pair["difference"] == 0 and pair["p"] == 1.0
    assert pair["low"] == pytest.approx(-pair["high"])
    assert pair["low"] < 0 < pair["high"]


def test_paired_interval_by_hand_independent_margins():
    # both=25, only_a=25, only_b=25, neither=25: p1 = p2 = 0.5, phi = 0 (ad - bc = 0):
    # the interval is +-sqrt(2) x (0.5 - Wilson low of 50/100)
    low, high = stats.newcombe_paired(25, 25, 25, 25)
    half = math.sqrt(2) * (0.5 - stats.wilson(50, 100)[0])
    assert (low, high) == (pytest.approx(-half), pytest.approx(half))
    assert half == pytest.approx(0.136003, abs=1e-5)  # 1.414214 x 1.887458 x sqrt(0.0025 + 0.000096036)


def test_paired_difference_needs_same_images():
    with pytest.raises(ValueError, match="same images"):
        stats.paired_difference(np.ones(3, bool), np.ones(4, bool))


def test_describe_and_verdicts():
    assert stats.describe(7, 100) == "7.0% [3.4, 13.7] (n = 100)"
    assert stats.format_p(0.21875) == "0.219" and stats.format_p(1e-5) == "< 0.001"
    assert stats.p_phrase(0.21875) == "p = 0.219" and stats.p_phrase(1e-5) == "p < 0.001"
    same = stats.paired_difference(np.array([1, 0] * 5, bool), np.array([0, 1] * 5, bool))
    assert "cannot tell the two apart" in stats.describe_pair(same, "A", "B")
    strong = stats.paired_difference(np.ones(40, bool), np.zeros(40, bool))
    assert stats.significant(strong) and "A is more accurate" in stats.describe_pair(strong, "A", "B")
    weaker = stats.paired_difference(np.zeros(40, bool), np.ones(40, bool))
    assert stats.describe_pair(weaker, "A", "B", ahead="more often fooled").endswith("B is more often fooled on these "
                                                                                      "images.")
    low, high = (100 * strong[key] for key in ("low", "high"))
    assert stats.difference_phrase(strong) == f"+100.0 points [{low:+.1f}, {high:+.1f}] (p < 0.001)"


def test_count_recovers_the_images_behind_a_logged_percentage():
    for k, n in ((0, 5952), (1, 3), (397, 5952), (5952, 5952)):
        assert stats.count(100 * k / n, n) == k


def test_across_seeds_gives_mean_sd_range_and_a_t_interval():
    spread = stats.across_seeds([0.20, 0.24, 0.25])
    assert spread["n"] == 3 and spread["mean"] == pytest.approx(0.23)
    assert spread["sd"] == pytest.approx(np.std([0.20, 0.24, 0.25], ddof=1))
    half = 4.302652729911275 * spread["sd"] / np.sqrt(3)  # Student t, 2 degrees of freedom, 97.5%
    assert (spread["low"], spread["high"]) == pytest.approx((0.23 - half, 0.23 + half))
    assert (spread["min"], spread["max"]) == (0.20, 0.25)
    assert stats.seeds_cell(spread) == "23.0 (sd 2.6; 20.0-25.0)"
    one = stats.across_seeds([0.3])
    assert one["mean"] == 0.3 and np.isnan(one["low"]) and stats.seeds_cell(one) == "30.0"
    with pytest.raises(ValueError, match="non-empty 1-d"):
        stats.across_seeds([])


def test_seeds_row_gives_each_seeds_interval_and_the_spread():
    corrects = [np.array([1] * 20 + [0] * 80, bool), np.array([1] * 30 + [0] * 70, bool)]
    row = stats.seeds_row("SimpleNet", corrects)
    assert row["seeds"] == 2 and row["n"] == 100
    assert row["top-1 of each seed (%)\n[95% CI]"] == (f"{stats.interval_cell(20, 100)}; "
                                                     f"{stats.interval_cell(30, 100)}")
    assert row["mean over seeds (%)\n(sd; range)"] == "25.0 (sd 7.1; 20.0-30.0)"


def test_paired_by_seed_pairs_seed_i_with_seed_i():
    a = [np.array([1, 1, 0], bool), np.array([0, 0, 0], bool)]
    b = [np.array([1, 0, 0], bool)]  # one seed: only the first of A is paired
    pairs = stats.paired_by_seed(a, b)
    assert len(pairs) == 1 and pairs[0] == stats.paired_difference(a[0], b[0]) and pairs[0]["b"] == 1

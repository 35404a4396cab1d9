"""Three outcomes from one-sided tests against declared thresholds, equivalence (TOST), compound claims and Holm."""
import math

import numpy as np
import pytest

from lib.report import rules
from lib.report.rules import Binomial, Exact, Normal, Part


def outcome(*parts):
    return rules.decide({1: list(parts)})[1]["outcome"]


def test_a_directional_claim_reaches_each_outcome():
    assert outcome(Part("d", Normal(0.05, 0.01), "above", 0.01)) == rules.SUPPORTED
    assert outcome(Part("d", Normal(-0.03, 0.01), "above", 0.01)) == rules.CONTRADICTED  # the other way
    assert outcome(Part("d", Normal(0.002, 0.002), "above", 0.01)) == rules.CONTRADICTED  # too small to count
    assert outcome(Part("d", Normal(0.015, 0.02), "above", 0.01)) == rules.INCONCLUSIVE
    assert outcome(Part("t", Normal(-0.2, 0.05, df=4), "below", math.log(0.95))) == rules.SUPPORTED


def test_equivalence_can_be_shown_and_refused():
    similar = Part("d", Normal(0.001, 0.003), "within", 0.01)
    assert similar.p_support() < 0.05 and outcome(similar) == rules.SUPPORTED
    assert outcome(Part("d", Normal(0.05, 0.01), "within", 0.01)) == rules.CONTRADICTED
    assert outcome(Part("d", Normal(-0.05, 0.01), "within", 0.01)) == rules.CONTRADICTED
    assert outcome(Part("d", Normal(0.004, 0.01), "within", 0.01)) == rules.INCONCLUSIVE  # too few images


def test_a_similar_claim_becomes_more_decidable_as_n_grows():
    """The same true difference of 0.3 points measured on ever more images: inconclusive, then equivalent."""
    outcomes = []
    for n in (500, 2_000, 10_000, 100_000):
        discordant = 0.2  # a fifth of the images are right for one model only
        se = math.sqrt(discordant / n)
        outcomes.append(outcome(Part("d", Normal(0.003, se), "within", 0.01)))
    assert outcomes[0] == rules.INCONCLUSIVE and outcomes[-1] == rules.SUPPORTED
    assert outcomes.index(rules.SUPPORTED) == min(i for i, o in enumerate(outcomes) if o == rules.SUPPORTED)
    assert all(o == rules.SUPPORTED for o in outcomes[outcomes.index(rules.SUPPORTED):])


def test_a_compound_claim_needs_every_part_and_falls_with_any():
    good, bad, open_ = (Part("a", Normal(0.05, 0.01), "above", 0.01), Part("b", Exact(1.3), "below", 0.95, "x"),
                        Part("c", Normal(0.012, 0.02), "above", 0.01))
    assert outcome(good, Part("m", Exact(0.9), "below", 0.95, "x")) == rules.SUPPORTED
    assert outcome(good, bad) == rules.CONTRADICTED
    assert outcome(good, open_) == rules.INCONCLUSIVE


def test_exact_binomial_tests_against_chance():
    assert outcome(Part("top-1", Binomial(0, 1000), "below", 0.01)) == rules.SUPPORTED  # P(0 of 1000 | 1%) tiny
    assert outcome(Part("top-1", Binomial(45, 1000), "below", 0.01)) == rules.CONTRADICTED
    assert outcome(Part("top-1", Binomial(0, 100), "below", 0.01)) == rules.INCONCLUSIVE  # 0.99^100 = 0.37


def test_holm_adjusts_step_down_and_keeps_order():
    assert rules.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert rules.holm([0.5]) == [0.5]
    ps = list(np.random.default_rng(0).uniform(size=8))
    adjusted = rules.holm(ps)
    assert all(a >= p for a, p in zip(adjusted, ps))
    assert [adjusted[i] for i in np.argsort(ps)] == sorted(adjusted)


def test_the_correction_can_turn_a_lone_finding_inconclusive():
    marginal = Part("d", Normal(0.04, 0.015), "above", 0.01)  # one-sided p = 0.023
    assert rules.decide({1: [marginal]})[1]["outcome"] == rules.SUPPORTED
    noise = {n: [Part("d", Normal(0.0, 0.01), "above", 0.01)] for n in range(2, 6)}
    decided = rules.decide({1: [marginal], **noise})
    assert decided[1]["outcome"] == rules.INCONCLUSIVE and decided[1]["holm_support"] > 0.05


def test_single_measurements_stay_out_of_the_holm_family():
    decided = rules.decide({1: [Part("m", Exact(1.3), "above", 1.1, "x")], 2: None,
                            3: [Part("d", Normal(0.05, 0.01), "above", 0.01)]})
    assert decided[1]["outcome"] == rules.SUPPORTED and decided[1]["holm_support"] is None
    assert decided[2]["outcome"] == rules.NOT_TESTABLE
    assert decided[3]["holm_support"] == pytest.approx(decided[3]["p_support"])  # a family of one


def test_more_data_says_how_many_times_the_images_would_decide_the_effect():
    part = Part("d", Normal(0.02, 0.01), "above", 0.01)  # 1 point from the threshold, se 1 point
    factor = part.more_data()
    assert factor == pytest.approx((1.6448536 + 0.8416212) ** 2, rel=1e-4)
    assert Part("d", Normal(0.01, 0.01), "above", 0.01).more_data() is None  # on the threshold
    assert Part("m", Exact(1.0), "above", 1.1, "x").more_data() is None

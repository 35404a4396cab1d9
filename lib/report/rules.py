"""Deciding a claim of the ledger (lib.report.claims) from measured effects: three outcomes, one-sided tests
against the ledger's thresholds, and Holm's correction over the ledger's tests.

A claim is judged from one or more parts; a part is an effect (a measured quantity with its uncertainty) and what
the claim says of it:

- 'above' t: the quantity exceeds t. Supported when "> t" is shown by a one-sided test, contradicted when "< t" is
  (the opposite, or a difference too small to count, is shown).
- 'below' t: the mirror image.
- 'within' m: |quantity| < m, a "similar" claim. Supported when equivalence is shown (TOST: "> -m" and "< m" both
  shown), contradicted when "> m" or "< -m" is shown (Bonferroni over the two sides).

A claim of several parts is supported when every part is (intersection-union: its p is the largest of its parts')
and contradicted when any part is (Bonferroni: the smallest part's p times the number of parts). Over the ledger,
Holm's step-down correction is applied separately to the tests of support and to the tests of contradiction, so
that each family's chance of a false call is at most ALPHA. A claim neither supported nor contradicted is
inconclusive, and the evidence says how much more data would decide the observed effect. More data narrows every
interval, so a claim only becomes more decidable as n grows.
"""
import dataclasses
import math

from scipy import stats as distributions

from lib.report import stats

ALPHA = 0.05  # family-wise level of each Holm family
POWER = 0.8  # for the effect that this n would decide
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE = ("supported", "contradicted", "inconclusive",
                                                       "not testable in this profile")
OUTCOMES = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)


@dataclasses.dataclass(frozen=True)
class Normal:
    """An estimate with a normal (df=None) or Student t (df degrees of freedom) standard error. sample: what n
    counts ('images', 'rounds'), for the evidence."""
    estimate: float
    se: float
    df: float = None
    sample: str = "images"

    def _dist(self):
        return distributions.norm if self.df is None else distributions.t(self.df)

    def p_above(self, threshold):
        """One-sided p of H0: quantity <= threshold."""
        if self.se == 0:
            return 0.0 if self.estimate > threshold else 1.0
        return float(self._dist().sf((self.estimate - threshold) / self.se))

    def p_below(self, threshold):
        """One-sided p of H0: quantity >= threshold."""
        if self.se == 0:
            return 0.0 if self.estimate < threshold else 1.0
        return float(self._dist().cdf((self.estimate - threshold) / self.se))

    def interval(self, level=0.95):
        """Two-sided interval (low, high)."""
        half = self._dist().ppf(0.5 + level / 2) * self.se
        return self.estimate - half, self.estimate + half

    def decides(self):
        """The distance from a threshold that this n decides with probability POWER at ALPHA (one-sided)."""
        return (self._dist().ppf(1 - ALPHA) + self._dist().ppf(POWER)) * self.se


@dataclasses.dataclass(frozen=True)
class Binomial:
    """k of n images, a proportion tested exactly against a threshold proportion."""
    k: int
    n: int
    sample: str = "images"

    @property
    def estimate(self):
        return self.k / self.n

    def p_above(self, threshold):
        return float(distributions.binom.sf(self.k - 1, self.n, threshold))

    def p_below(self, threshold):
        return float(distributions.binom.cdf(self.k, self.n, threshold))

    def interval(self, level=0.95):
        return stats.wilson(self.k, self.n, distributions.norm.ppf(0.5 + level / 2))

    def decides(self):
        p = max(self.estimate, 1 / self.n)
        return (distributions.norm.ppf(1 - ALPHA) + distributions.norm.ppf(POWER)) * math.sqrt(p * (1 - p) / self.n)


@dataclasses.dataclass(frozen=True)
class Exact:
    """A single measurement without a sampling error: compared with the threshold as it is."""
    estimate: float
    sample: str = ""

    def p_above(self, threshold):
        return 0.0 if self.estimate > threshold else 1.0

    def p_below(self, threshold):
        return 0.0 if self.estimate < threshold else 1.0

    def interval(self, level=0.95):
        return self.estimate, self.estimate

    def decides(self):
        return 0.0


@dataclasses.dataclass(frozen=True)
class Part:
    """What a claim says of one effect: kind 'above' / 'below' threshold, or 'within' +-threshold. name: the
    quantity in words; unit: how to show it (lib.report.judge.show)."""
    name: str
    effect: object
    kind: str
    threshold: float
    unit: str = "points"

    def p_support(self):
        """One-sided p of the claim's side of the threshold (TOST for 'within')."""
        e, t = self.effect, self.threshold
        if self.kind == "within":
            return max(e.p_above(-t), e.p_below(t))
        return e.p_above(t) if self.kind == "above" else e.p_below(t)

    def p_contra(self):
        """One-sided p of the other side (for 'within': beyond the margin on either side, Bonferroni)."""
        e, t = self.effect, self.threshold
        if self.kind == "within":
            return min(1.0, 2 * min(e.p_above(t), e.p_below(-t)))
        return e.p_below(t) if self.kind == "above" else e.p_above(t)

    @property
    def tested(self):
        return not isinstance(self.effect, Exact)

    def more_data(self):
        """How many times this n would decide the observed effect (None: exact, or the estimate sits on a
        threshold, which no n decides)."""
        e, t = self.effect, self.threshold
        distance = abs(t - abs(e.estimate)) if self.kind == "within" else abs(e.estimate - t)
        decides = e.decides()
        if not self.tested or distance <= 0 or decides == 0:
            return None
        return (decides / distance) ** 2


def p_values(parts):
    """(p of support, p of contradiction) of a claim made of `parts`, before the ledger's correction."""
    support = max(part.p_support() for part in parts)
    contra = min(1.0, len(parts) * min(part.p_contra() for part in parts))
    return support, contra


def holm(ps):
    """Holm's step-down adjusted p values of `ps` (a list), in the same order."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def decide(claims_parts):
    """Outcomes of the ledger. claims_parts: {number: [Part, ...] or None (not testable)}. Returns {number: dict
    outcome, p_support / p_contra (raw) and holm_support / holm_contra (adjusted; None for a claim with no tested
    part, which is decided by its measurements alone and is not in the Holm families)}."""
    raw = {n: p_values(parts) for n, parts in claims_parts.items() if parts}
    family = [n for n in raw if any(part.tested for part in claims_parts[n])]
    adjusted = dict(zip(family, zip(holm([raw[n][0] for n in family]), holm([raw[n][1] for n in family]))))
    decided = {}
    for n in claims_parts:
        (p_support, p_contra), holm_ps = raw.get(n, (None, None)), adjusted.get(n, (None, None))
        support, contra = holm_ps if n in adjusted else (p_support, p_contra)
        outcome = (NOT_TESTABLE if n not in raw else SUPPORTED if support < ALPHA else
                   CONTRADICTED if contra < ALPHA else INCONCLUSIVE)
        decided[n] = dict(outcome=outcome, p_support=p_support, p_contra=p_contra, holm_support=holm_ps[0],
                          holm_contra=holm_ps[1])
    return decided

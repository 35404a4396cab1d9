"""Uncertainty of accuracies measured on a finite set of images, and paired comparisons of two models.

An accuracy is a proportion k / n of images classified correctly. Its 95% interval is Wilson's score
interval. Two models measured on the *same* images are compared through their per-image correctness:
the paired difference of accuracies with Newcombe's score interval for paired proportions, and the exact
McNemar test, a two-sided binomial test on the discordant pairs (images that exactly one model gets right).

All functions take counts or boolean per-image arrays and return plain floats (proportions in [0, 1]);
`describe` / `describe_pair` format them in percent for tables and prose.
"""
import math

import numpy as np


Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
SIGNIFICANCE = 0.05  # a difference is called a finding only when its McNemar p is below this


def wilson(k, n, z=Z95):
    """Wilson score interval (low, high) of the proportion k / n; (0, 1) when n = 0."""
    _check_counts(k, n)
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p value for b and c discordant pairs.

    Under the null hypothesis (both models equally accurate) each discordant pair falls either way with
    probability 1/2, so min(b, c) is binomial(b + c, 1/2); p = 2 P(X <= min(b, c)), capped at 1.
    """
    _check_counts(b, b + c)
    n, low = b + c, min(b, c)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference(correct_a, correct_b, z=Z95):
    """Paired comparison of two models on the same images (per-image correctness, boolean arrays (n,)).

    Returns a dict: n; acc_a, acc_b (proportions); difference = acc_a - acc_b with its 95% interval
    (low, high) by Newcombe's method 10 (Wilson intervals of both accuracies combined through the
    correlation of the pairs); b = images only A gets right, c = images only B gets right; p = exact McNemar.
    """
    a_ok, b_ok = _as_bool(correct_a), _as_bool(correct_b)
    if a_ok.shape != b_ok.shape:
        raise ValueError(f"paired comparison needs the same images for both models, got {a_ok.shape} and "
                         f"{b_ok.shape} per-image results")
    n = a_ok.size
    both, only_a = int((a_ok & b_ok).sum()), int((a_ok & ~b_ok).sum())
    only_b, neither = int((~a_ok & b_ok).sum()), int((~a_ok & ~b_ok).sum())
    low, high = newcombe_paired(both, only_a, only_b, neither, z)
    return {"n": n, "acc_a": (both + only_a) / n if n else math.nan, "acc_b": (both + only_b) / n if n else math.nan,
            "difference": (only_a - only_b) / n if n else math.nan, "low": low, "high": high,
            "b": only_a, "c": only_b, "p": mcnemar_exact(only_a, only_b)}


def paired_by_seed(corrects_a, corrects_b):
    """`paired_difference` of seed i of A against seed i of B, for every seed both have (corrects: per-image
    correctness on the same images, one bool array (n,) per seed), a list."""
    return [paired_difference(a, b) for a, b in zip(corrects_a, corrects_b)]


def newcombe_paired(both, only_a, only_b, neither, z=Z95):
    """95% interval (low, high) of acc_a - acc_b from the 2x2 table of paired correctness (Newcombe 1998, 10)."""
    n = both + only_a + only_b + neither
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson(both + only_a, n, z)
    l2, u2 = wilson(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    if margins == 0:
        phi = 0.0
    else:
        phi = (max(cross - n / 2, 0) if cross > 0 else cross) / math.sqrt(margins)
    difference = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, difference - below), min(1.0, difference + above)


def accuracy(correct):
    """Accuracy of per-image correctness (boolean array (n,)): dict k, n, acc, low, high (proportions)."""
    ok = _as_bool(correct)
    k, n = int(ok.sum()), ok.size
    low, high = wilson(k, n)
    return {"k": k, "n": n, "acc": k / n if n else math.nan, "low": low, "high": high}


def count(percent, n):
    """The number of images behind an accuracy of `percent` % of n images (a logged accuracy back to its count)."""
    return round(percent * n / 100)


def across_seeds(values):
    """The spread of one quantity over training seeds (per-seed values, e.g. accuracies or paired differences as
    proportions): dict n, mean, sd (sample standard deviation), min, max, and low / high, the 95% Student t
    interval of the mean across seeds (n - 1 degrees of freedom); sd, low and high are nan for one seed."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"across_seeds needs a non-empty 1-d list of per-seed values, got shape {values.shape}")
    n, mean = values.size, float(values.mean())
    if n == 1:
        sd = low = high = math.nan
    else:
        from scipy.stats import t  # imported here: only a study with several seeds needs it
        sd = float(values.std(ddof=1))
        half = t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    return {"n": n, "mean": mean, "sd": sd, "min": float(values.min()), "max": float(values.max()),
            "low": low, "high": high}


# ----------------------------------------------------------------------------- formatting

def describe(k, n, digits=1):
    """'7.0% [3.4, 13.7] (n = 100)': a percentage with its 95% Wilson interval and n."""
    if n == 0:
        return "– (n = 0)"
    low, high = wilson(k, n)
    return f"{100 * k / n:.{digits}f}% [{100 * low:.{digits}f}, {100 * high:.{digits}f}] (n = {n:,})"


def interval_cell(k, n, digits=1):
    """'7.0 [3.4, 13.7]': a percentage and its 95% Wilson interval, for a table column that states n."""
    if n == 0:
        return "–"
    low, high = wilson(k, n)
    return f"{100 * k / n:.{digits}f} [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"


def comparison_row(pair, name_a, name_b, label=None, digits=1):
    """A table row (dict) of a paired comparison: both accuracies, the difference with its interval, the
    discordant counts, McNemar's p and whether this execution can tell the two apart. The first column holds
    `label`, by default "A vs B"."""
    d, lo, hi = (100 * pair[key] for key in ("difference", "low", "high"))
    return {"comparison": label or f"{name_a} vs {name_b}",
            "A - B (points)\n[95% CI]": f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]",
            "only A / only B\nright": f"{pair['b']} / {pair['c']}", "n": pair["n"], "McNemar\np": format_p(pair["p"]),
            "difference?": "yes" if significant(pair) else "cannot tell"}


def seeds_cell(spread, digits=1):
    """'23.4 (sd 1.2; 22.1-24.6)': the mean of per-seed proportions of `across_seeds` in percent, its standard
    deviation and range over the seeds; the mean alone for one seed."""
    mean = f"{100 * spread['mean']:.{digits}f}"
    if spread["n"] == 1:
        return mean
    return (f"{mean} (sd {100 * spread['sd']:.{digits}f}; {100 * spread['min']:.{digits}f}-"
            f"{100 * spread['max']:.{digits}f})")


def seeds_row(label, corrects, digits=1):
    """A table row of one experiment over its training seeds (corrects: per-image correctness, one bool array per
    seed, on the same n images): each seed's accuracy with its 95% Wilson interval, and their mean with the spread
    across seeds (seeds_cell)."""
    spread = across_seeds([np.mean(_as_bool(ok)) for ok in corrects])
    return {"experiment": label, "seeds": len(corrects), "n": len(corrects[0]),
            "top-1 of each seed (%)\n[95% CI]": "; ".join(interval_cell(int(_as_bool(ok).sum()), len(ok), digits)
                                                         for ok in corrects),
            "mean over seeds (%)\n(sd; range)": seeds_cell(spread, digits)}


def format_p(p):
    """A p value for prose and tables: three significant digits, '< 0.001' below that."""
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def p_phrase(p):
    """A p value in a sentence: 'p = 0.219', or 'p < 0.001'."""
    return f"p {format_p(p)}" if p < 0.001 else f"p = {format_p(p)}"


def describe_pair(pair, name_a, name_b, digits=1, ahead="more accurate"):
    """A sentence fragment on a paired comparison (a dict of `paired_difference`), with its verdict.

    The difference is called one only when McNemar's p < SIGNIFICANCE (then the one with more hits "is
    `ahead` on these images"); otherwise the sentence says that this execution cannot tell the two apart at
    this n.
    """
    d, lo, hi = (100 * pair[key] for key in ("difference", "low", "high"))
    numbers = (f"{name_a} minus {name_b}: {d:+.{digits}f} points [{lo:+.{digits}f}, {hi:+.{digits}f}], "
               f"{pair['b']} vs {pair['c']} discordant images of {pair['n']:,}, McNemar {p_phrase(pair['p'])}")
    if significant(pair):
        return f"{numbers}: {name_a if d > 0 else name_b} is {ahead} on these images."
    return f"{numbers}: this execution cannot tell the two apart at this n."


def difference_phrase(pair, digits=1):
    """'+17.0 points [+11.9, +22.9] (p < 0.001)': a paired difference with its 95% interval and McNemar p."""
    d, lo, hi = (100 * pair[key] for key in ("difference", "low", "high"))
    return f"{d:+.{digits}f} points [{lo:+.{digits}f}, {hi:+.{digits}f}] ({p_phrase(pair['p'])})"


def significant(pair):
    """True when a paired comparison's McNemar p is below SIGNIFICANCE."""
    return pair["p"] < SIGNIFICANCE


def _check_counts(k, n):
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n or not 0 <= k <= n:
        raise ValueError(f"counts must be integers with 0 <= k <= n, got k={k!r}, n={n!r}")


def _as_bool(values):
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"per-image correctness must be a 1-d array, got shape {array.shape}")
    return array.astype(bool)

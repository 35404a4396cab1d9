"""The reference report's numbers (REFERENCE.md), quoted for comparison, and the phrases that describe this
execution's comparisons: over training seeds (seed i of A against seed i of B on the same images; a single dict for
one seed), step-time ratios over the rounds of a side-by-side measurement, and whether the default PGD overstated a
model's robustness. The reference's claims themselves are judged by the ledger (lib.report.claims, judge, rules).
"""
from lib.report import stats
from lib.report.claims import COST_MARGIN
from lib.training.step_costs import round_ratios


# REFERENCE.md (MiniPlaces val, 10,000 images; full data; GPU): epochs, top-1, top-5 (None: not reported).
REFERENCE = {
    "simplenet": (60, 44.22, 73.39), "simplenet_custom": (10, 22.15, 51.47), "improvednet": (60, 46.31, 76.08),
    "improvednet_table": (60, None, None), "resnet18": (60, 53.26, 79.29), "vit": (90, None, None),
    "vit_global": (None, None, None), "advsimplenet": (70, None, None),
}
# The ViT's settings (REFERENCE.md, section 2).
REFERENCE_VIT = dict(image_size=128, patch_size=16, embed_dim=192, depth=4, num_heads=4, window_size=4, epochs=90)
# Under the default PGD attack: top-1, top-5.
REFERENCE_ATTACKED = {"simplenet": (0.23, 4.77), "advsimplenet": (35.53, 63.75)}


def reference_cells(name, attacked=False, epochs=True):
    """The reference's numbers of experiment `name` as table cells: epochs (unless `epochs` is False; None under
    attack), top-1 and top-5 (%), clean or under the default attack."""
    if attacked:
        cells = {"reference\nepochs": None, "reference\ntop-1 (%)": REFERENCE_ATTACKED[name][0],
                 "reference\ntop-5 (%)": REFERENCE_ATTACKED[name][1]}
    else:
        cells = dict(zip(("reference\nepochs", "reference\ntop-1 (%)", "reference\ntop-5 (%)"), REFERENCE[name]))
    return cells if epochs else {key: value for key, value in cells.items() if key != "reference\nepochs"}


def per_seed(pairs):
    """The per-seed paired comparisons: `pairs` itself (a list, one per seed), or [pairs] for a single dict."""
    return [pairs] if isinstance(pairs, dict) else list(pairs)


def seed_direction(pairs):
    """The verdict rule over training seeds: +1 when every seed's paired comparison (A vs B) is significant with A
    ahead, -1 when every one is with B ahead, 0 when no difference is called. With one seed it is that seed's
    McNemar test alone."""
    pairs = per_seed(pairs)
    for sign in (1, -1):
        if all(stats.significant(pair) and sign * pair["difference"] > 0 for pair in pairs):
            return sign
    return 0


def describe_seeds(pairs, name_a, name_b, ahead="more accurate"):
    """The evidence of a comparison over seeds (see seed_direction): with one seed stats.describe_pair; with several,
    each seed's difference, their mean with its interval and range across seeds, and the verdict."""
    pairs = per_seed(pairs)
    if len(pairs) == 1:
        return stats.describe_pair(pairs[0], name_a, name_b, ahead=ahead)
    spread = stats.across_seeds([pair["difference"] for pair in pairs])
    mean, low, high, least, most = (100 * spread[key] for key in ("mean", "low", "high", "min", "max"))
    each = "; ".join(f"seed {i + 1}: {stats.difference_phrase(pair)}" for i, pair in enumerate(pairs))
    direction = seed_direction(pairs)
    significant = sum(stats.significant(pair) for pair in pairs)
    verdict = (f"{name_a if direction > 0 else name_b} is {ahead} in every seed." if direction else
               f"significant in {significant} of {len(pairs)} seeds, so no difference is called.")
    return (f"{name_a} minus {name_b} over {len(pairs)} training seeds, each pair on the same {pairs[0]['n']:,} "
            f"images ({each}): mean {mean:+.1f} points, 95% interval across seeds [{low:+.1f}, {high:+.1f}], "
            f"from {least:+.1f} to {most:+.1f}; {verdict}")


def ratio_word(ratio):
    """A (deterministic) cost ratio in words: within COST_MARGIN of 1 it is "about the same"."""
    return "about the same" if abs(ratio - 1) <= COST_MARGIN else ("higher" if ratio > 1 else "lower")


def time_word(ratios):
    """A step-time ratio (median, lowest, highest over the rounds; lib.training.step_costs.round_ratios) in words: "higher" or
    "lower" when every round's ratio lies beyond COST_MARGIN on that side, "about the same" when every one lies
    within it, otherwise "not the same in every round"."""
    _, low, high = ratios
    if low > 1 + COST_MARGIN or high < 1 - COST_MARGIN:
        return "higher" if low > 1 else "lower"
    return "about the same" if 1 - COST_MARGIN <= low and high <= 1 + COST_MARGIN else "not the same in every round"


def ratio_phrase(ratios):
    """'1.31x (1.25-1.58x over the rounds)': a step-time ratio of lib.training.step_costs.round_ratios."""
    median, low, high = ratios
    return f"{median:.2f}x ({low:.2f}-{high:.2f}x over the rounds)"


def pgd_overstatement(pairs, model, pgd="PGD-10", strongest="the strongest attack"):
    """A sentence on whether `pgd` overstated `model`'s robustness. pairs: paired comparisons of top-1 correctness
    under `pgd` vs under `strongest` (the worst case of every attack evaluated, lib.report.analysis.robust_to_all)
    on the same images, one per seed: overstated when seed_direction finds the model more accurate under pgd."""
    evidence = describe_seeds(pairs, f"{model} under {pgd}", f"{model} under {strongest}")
    if seed_direction(pairs) > 0:
        return f"{pgd} overstated {model}'s robustness: {evidence}"
    return f"{strongest.capitalize()} did not lower {model}'s top-1 significantly below {pgd}'s: {evidence}"

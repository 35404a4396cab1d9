"""The reference report's findings, judged from this execution's numbers: reproduced, not reproduced, or not
testable in this profile; and the reference's numbers (REFERENCE.md), quoted for comparison.

Each `judge_*` function takes computed results (paired comparisons from lib.report.stats, cost measurements from
lib.report.measurements, attack summaries from lib.report.analysis) and returns a dict: finding (the reference's claim),
verdict (one of VERDICTS) and evidence (the numbers and the test behind the verdict, one sentence or two).
Accuracy comparisons take one paired comparison per training seed (seed i of A against seed i of B on the same
images; a single dict for one seed) and follow `seed_direction`: a difference counts only when every seed's exact
McNemar p is below lib.report.stats.SIGNIFICANCE with the same model ahead. A cost counts as lower or higher when it
differs by more than COST_MARGIN, a step time only when it does so in every round of the side-by-side measurement.
"""
from lib.report import stats
from lib.training.step_costs import round_ratios


REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable in this profile"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE)
COST_MARGIN = 0.05  # a measured time or memory ratio within 5% of 1 is "about the same"

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
COLLAPSE = 0.1  # "collapses": the attacked top-1 is at most this fraction of the clean top-1
CHANCE = 0.01  # top-1 of a guess among MiniPlaces' 100 classes


def reference_cells(name, attacked=False, epochs=True):
    """The reference's numbers of experiment `name` as table cells: epochs (unless `epochs` is False; None under
    attack), top-1 and top-5 (%), clean or under the default attack."""
    if attacked:
        cells = {"reference\nepochs": None, "reference\ntop-1 (%)": REFERENCE_ATTACKED[name][0],
                 "reference\ntop-5 (%)": REFERENCE_ATTACKED[name][1]}
    else:
        cells = dict(zip(("reference\nepochs", "reference\ntop-1 (%)", "reference\ntop-5 (%)"), REFERENCE[name]))
    return cells if epochs else {key: value for key, value in cells.items() if key != "reference\nepochs"}


def _verdict(finding, verdict, evidence):
    assert verdict in VERDICTS
    return {"finding": finding, "verdict": verdict, "evidence": evidence}


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


def rule_text(seeds):
    """The verdict rule in words, for the Findings: `seeds` training seeds per compared experiment."""
    alpha = f"p < {stats.SIGNIFICANCE:g}"
    if seeds == 1:
        return ("Each compared model was trained once (one seed), so every verdict compares these trained networks, "
                "one seed each: it says whether they differ on these images, not whether their recipes would differ "
                f"again with another seed. A difference in accuracy is called one when the exact McNemar test gives "
                f"{alpha}.")
    return (f"Each model behind a comparison was trained with {seeds} seeds (the configured seed, then the next "
            f"ones), and seed i of one model is compared with seed i of the other on the same images. A difference in "
            f"accuracy is called one only when every seed's exact McNemar test gives {alpha} with the same model "
            "ahead; the evidence gives each seed's paired difference and their mean with its 95% t interval across "
            f"the seeds ({seeds - 1} degree{'s' if seeds > 2 else ''} of freedom) and their range.")


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


def judge_custom_conv(costs):
    """'The custom convolution is slower and needs more memory than nn.Conv2d.'

    costs: lib.report.measurements.conv_costs (native / custom: round_seconds, peak_memory_mb; rounds).
    """
    ratios = round_ratios(costs["custom"], costs["native"])
    memory_ratio = costs["custom"]["peak_memory_mb"] / costs["native"]["peak_memory_mb"]
    slower, bigger = time_word(ratios) == "higher", memory_ratio > 1 + COST_MARGIN
    evidence = (f"A training step with the custom convolution took {ratio_phrase(ratios)} the time of nn.Conv2d's "
                f"and held {memory_ratio:.2f}x its peak memory ({costs['rounds']} rounds side by side, batch "
                f"{costs['batch']} at {costs['image_size']} px on {costs['device_name']}; time "
                f"{time_word(ratios)}, memory {ratio_word(memory_ratio)}).")
    return _verdict("The custom convolution is slower and needs more memory than nn.Conv2d.",
                    REPRODUCED if slower and bigger else NOT_REPRODUCED, evidence)


def judge_better(pairs, name_a, name_b, finding):
    """'A is more accurate than B', from paired comparisons of A vs B, one per seed (see seed_direction)."""
    verdict = REPRODUCED if seed_direction(pairs) > 0 else NOT_REPRODUCED
    return _verdict(finding, verdict, describe_seeds(pairs, name_a, name_b))


def judge_resnet_best(pairs, pretrained):
    """'Pretrained ResNet-18 is the most accurate CNN.' pairs: {other model name: paired comparisons of
    ResNet-18 vs that model, one per seed}; pretrained: whether the run started from ImageNet weights (untestable
    without them)."""
    finding = "ImageNet-pretrained ResNet-18 is the most accurate model."
    evidence = " ".join(describe_seeds(pair, "ResNet-18", name) for name, pair in pairs.items())
    if not pretrained:
        return _verdict(finding, NOT_TESTABLE, "No ImageNet weights were available (offline), so ResNet-18 was "
                        "trained from random initialisation; the claim is about the pretrained model. For the record: "
                        + evidence)
    best = all(seed_direction(pair) > 0 for pair in pairs.values())
    return _verdict(finding, REPRODUCED if best else NOT_REPRODUCED, evidence)


def judge_window_attention(costs, pairs):
    """'Window attention saves compute at similar accuracy.'

    costs: lib.report.measurements.vit_costs (window / global: attention_flops, round_seconds, peak_memory_mb);
    pairs: paired_difference(window, global) on the validation images, one per seed. Compute is saved when
    attention FLOPs are lower by more than COST_MARGIN, and the step time (in every round) or the peak memory
    too; accuracy is similar when seed_direction calls no difference (the intervals say how close that is).
    """
    ratio = {key: costs["window"][key] / costs["global"][key] for key in ("attention_flops", "peak_memory_mb")}
    times = round_ratios(costs["window"], costs["global"])
    fewer_flops = ratio["attention_flops"] < 1 - COST_MARGIN
    measured = time_word(times) == "lower" or ratio["peak_memory_mb"] < 1 - COST_MARGIN
    similar = seed_direction(pairs) == 0
    evidence = (f"Window attention needs {ratio['attention_flops']:.0%} of the attention FLOPs; a measured training "
                f"step took {ratio_phrase(times)} the time and {ratio['peak_memory_mb']:.2f}x the peak "
                f"memory of the all-global model (batch {costs['batch']} at {costs['image_size']} px). Accuracy, "
                + describe_seeds(pairs, "window", "global"))
    verdict = REPRODUCED if fewer_flops and measured and similar else NOT_REPRODUCED
    return _verdict("Window attention saves compute (fewer attention FLOPs and a faster or leaner measured step) "
                    "at similar accuracy.", verdict, evidence)


def judge_collapse(results, clean_vs_attacked):
    """'The targeted PGD attack collapses SimpleNet's accuracy.' results: SimpleNet's under-attack summaries
    (clean_acc1, adv_acc1, num_images), one per seed (a single dict: one seed); clean_vs_attacked: the paired
    comparisons of clean vs attacked correctness, one per seed. Collapse: in every seed the attacked top-1 is at most
    COLLAPSE x the clean top-1 and the drop is significant.
    """
    results, pairs = per_seed(results), per_seed(clean_vs_attacked)
    finding = "The targeted PGD attack collapses SimpleNet's top-1 accuracy."
    evidence = " ".join((f"Seed {i + 1}: " if len(pairs) > 1 else "") + _collapse_evidence(result, pair)
                        for i, (result, pair) in enumerate(zip(results, pairs)))
    if all(pair["b"] + pair["c"] == 0 and result["clean_acc1"] == 0 for result, pair in zip(results, pairs)):
        return _verdict(finding, NOT_TESTABLE, "SimpleNet classifies none of the attacked images correctly "
                        "without attack, so there is nothing to collapse. " + evidence)
    collapsed = all(result["adv_acc1"] <= COLLAPSE * result["clean_acc1"] and stats.significant(pair)
                    for result, pair in zip(results, pairs))
    return _verdict(finding, REPRODUCED if collapsed else NOT_REPRODUCED, evidence)


def _collapse_evidence(result, pair):
    n = result["num_images"]
    return (f"Top-1 {stats.describe(stats.count(result['clean_acc1'], n), n)} without and "
            f"{stats.describe(stats.count(result['adv_acc1'], n), n)} under the attack; "
            + stats.describe_pair(pair, "clean", "attacked"))


def judge_adversarial_training(attacked_pairs, clean_pairs, attack="the attack"):
    """'Adversarial training keeps accuracy under attack at a cost in clean accuracy.'

    attacked_pairs: paired_difference(AdvSimpleNet, SimpleNet) of top-1 correctness under `attack` (named in the
    evidence: the strongest attack evaluated), one per seed; clean_pairs: the same without attack. Reproduced when
    seed_direction finds AdvSimpleNet more accurate under attack and less accurate clean, and in every seed its
    top-1 under attack is above CHANCE (the lower end of its 95% Wilson interval): an accuracy at chance is not kept.
    """
    robust, costly = seed_direction(attacked_pairs) > 0, seed_direction(clean_pairs) < 0
    evidence = (f"Under {attack}, " + describe_seeds(attacked_pairs, "AdvSimpleNet", "SimpleNet")
                + " Without attack, " + describe_seeds(clean_pairs, "AdvSimpleNet", "SimpleNet"))
    kept = [(round(pair["acc_a"] * pair["n"]), pair["n"]) for pair in per_seed(attacked_pairs)]
    at_chance = [counts for counts in kept if stats.wilson(*counts)[0] <= CHANCE]
    if at_chance:
        evidence += (f" AdvSimpleNet's top-1 under {attack}, " + ", ".join(stats.describe(*c) for c in at_chance)
                     + f", is not above chance ({CHANCE:.0%} among 100 classes): no accuracy is kept to speak of.")
    return _verdict("Adversarial training keeps accuracy under attack, at a cost in clean accuracy.",
                    REPRODUCED if robust and costly and not at_chance else NOT_REPRODUCED, evidence)


def pgd_overstatement(pairs, model, pgd="PGD-10", strongest="the strongest attack"):
    """A sentence on whether `pgd` overstated `model`'s robustness. pairs: paired comparisons of top-1 correctness
    under `pgd` vs under `strongest` (the worst case of every attack evaluated, lib.report.analysis.robust_to_all)
    on the same images, one per seed: overstated when seed_direction finds the model more accurate under pgd."""
    evidence = describe_seeds(pairs, f"{model} under {pgd}", f"{model} under {strongest}")
    if seed_direction(pairs) > 0:
        return f"{pgd} overstated {model}'s robustness: {evidence}"
    return f"{strongest.capitalize()} did not lower {model}'s top-1 significantly below {pgd}'s: {evidence}"

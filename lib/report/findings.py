"""The reference report's findings, judged from this execution's numbers: reproduced, not reproduced, or not
testable in this profile; and the reference's numbers (REFERENCE.md), quoted for comparison.

Each `judge_*` function takes computed results (paired comparisons from lib.report.stats, cost measurements from
lib.report.measurements, attack summaries from lib.report.analysis) and returns a dict: finding (the reference's claim),
verdict (one of VERDICTS) and evidence (the numbers and the test behind the verdict, one sentence or two).
A difference in accuracy counts only when its exact McNemar p is below lib.report.stats.SIGNIFICANCE; a cost counts
as lower or higher when it differs by more than COST_MARGIN, a step time only when it does so in every round of
the side-by-side measurement.
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


def judge_better(pair, name_a, name_b, finding):
    """'A is more accurate than B', from a paired comparison (lib.report.stats.paired_difference of A vs B)."""
    verdict = REPRODUCED if stats.significant(pair) and pair["difference"] > 0 else NOT_REPRODUCED
    return _verdict(finding, verdict, stats.describe_pair(pair, name_a, name_b))


def judge_resnet_best(pairs, pretrained):
    """'Pretrained ResNet-18 is the most accurate CNN.' pairs: {other model name: paired_difference(ResNet-18,
    other)}; pretrained: whether the run started from ImageNet weights (untestable without them)."""
    finding = "ImageNet-pretrained ResNet-18 is the most accurate model."
    evidence = " ".join(stats.describe_pair(pair, "ResNet-18", name) for name, pair in pairs.items())
    if not pretrained:
        return _verdict(finding, NOT_TESTABLE, "No ImageNet weights were available (offline), so ResNet-18 was "
                        "trained from random initialisation; the claim is about the pretrained model. For the record: "
                        + evidence)
    best = all(stats.significant(pair) and pair["difference"] > 0 for pair in pairs.values())
    return _verdict(finding, REPRODUCED if best else NOT_REPRODUCED, evidence)


def judge_window_attention(costs, pair):
    """'Window attention saves compute at similar accuracy.'

    costs: lib.report.measurements.vit_costs (window / global: attention_flops, round_seconds, peak_memory_mb);
    pair: paired_difference(window, global) on the validation images. Compute is saved when attention FLOPs
    are lower by more than COST_MARGIN, and the step time (in every round) or the peak memory too; accuracy is
    similar when the McNemar test finds no difference (p >= SIGNIFICANCE; the interval says how close that is).
    """
    ratio = {key: costs["window"][key] / costs["global"][key] for key in ("attention_flops", "peak_memory_mb")}
    times = round_ratios(costs["window"], costs["global"])
    fewer_flops = ratio["attention_flops"] < 1 - COST_MARGIN
    measured = time_word(times) == "lower" or ratio["peak_memory_mb"] < 1 - COST_MARGIN
    similar = not stats.significant(pair)
    evidence = (f"Window attention needs {ratio['attention_flops']:.0%} of the attention FLOPs; a measured training "
                f"step took {ratio_phrase(times)} the time and {ratio['peak_memory_mb']:.2f}x the peak "
                f"memory of the all-global model (batch {costs['batch']} at {costs['image_size']} px). Accuracy, "
                + stats.describe_pair(pair, "window", "global"))
    verdict = REPRODUCED if fewer_flops and measured and similar else NOT_REPRODUCED
    return _verdict("Window attention saves compute (fewer attention FLOPs and a faster or leaner measured step) "
                    "at similar accuracy.", verdict, evidence)


def judge_collapse(result, clean_vs_attacked):
    """'The targeted PGD attack collapses SimpleNet's accuracy.' result: SimpleNet's under-attack summary
    (clean_acc1, adv_acc1, num_images); clean_vs_attacked: paired_difference(clean, attacked correctness).
    Collapse: the attacked top-1 is at most COLLAPSE x the clean top-1 and the drop is significant.
    """
    n, clean, attacked = result["num_images"], result["clean_acc1"], result["adv_acc1"]
    finding = "The targeted PGD attack collapses SimpleNet's top-1 accuracy."
    evidence = (f"Top-1 {stats.describe(stats.count(clean, n), n)} without and "
                f"{stats.describe(stats.count(attacked, n), n)} under the attack; "
                + stats.describe_pair(clean_vs_attacked, "clean", "attacked"))
    if clean_vs_attacked["b"] + clean_vs_attacked["c"] == 0 and clean == 0:
        return _verdict(finding, NOT_TESTABLE, "SimpleNet classifies none of the attacked images correctly "
                        "without attack, so there is nothing to collapse. " + evidence)
    collapsed = attacked <= COLLAPSE * clean and stats.significant(clean_vs_attacked)
    return _verdict(finding, REPRODUCED if collapsed else NOT_REPRODUCED, evidence)


def judge_adversarial_training(attacked_pair, clean_pair):
    """'Adversarial training keeps accuracy under attack at a cost in clean accuracy.'

    attacked_pair: paired_difference(AdvSimpleNet, SimpleNet) of top-1 correctness under the attack;
    clean_pair: the same without attack. Reproduced when AdvSimpleNet is significantly more accurate under
    attack and significantly less accurate clean.
    """
    robust = stats.significant(attacked_pair) and attacked_pair["difference"] > 0
    costly = stats.significant(clean_pair) and clean_pair["difference"] < 0
    evidence = ("Under attack, " + stats.describe_pair(attacked_pair, "AdvSimpleNet", "SimpleNet")
                + " Without attack, " + stats.describe_pair(clean_pair, "AdvSimpleNet", "SimpleNet"))
    return _verdict("Adversarial training keeps accuracy under attack, at a cost in clean accuracy.",
                    REPRODUCED if robust and costly else NOT_REPRODUCED, evidence)

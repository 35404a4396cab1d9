"""The ledger's claims measured: each `claim_<n>` turns this execution's numbers into the parts of claim n
(lib.report.rules.Part, thresholds from lib.report.claims), and `judge` decides them all at once (Holm over the
ledger). Inputs are plain: per-image correctness arrays, step-cost measurements, trainer logs (a run's history
and metrics), attack results; nothing here reads a tune split or picks a setting.
"""
import math

import numpy as np

from lib.report import claims as ledger, rules
from lib.report.rules import Binomial, Exact, Normal, Part


# ----------------------------------------------------------------------------- effects

def paired_effect(corrects_a, corrects_b):
    """A minus B in top-1 on the same images (proportion): corrects are per-image correctness, one bool array (n,)
    per training seed. Each image's correctness is averaged over the seeds, and the per-image differences give the
    mean and its standard error (images are the sampling unit; more seeds lower the noise of each image's value).
    The standard error counts two more images, one right for A only and one for B only (Agresti and Min's
    adjustment), so that a few images without a discordant pair do not claim certainty."""
    a = np.mean([np.asarray(c, dtype=float) for c in corrects_a], axis=0)
    b = np.mean([np.asarray(c, dtype=float) for c in corrects_b], axis=0)
    difference = a - b
    padded = np.concatenate([difference, [1.0, -1.0]])
    return Normal(float(difference.mean()), float(padded.std(ddof=1) / math.sqrt(padded.size)))


def log_ratio_effect(a, b):
    """log of a's step time over b's: two results of one side-by-side measurement (lib.training.step_costs.
    compare_training_steps, 'round_seconds'), a Student t over the rounds' log ratios."""
    return mean_effect(np.log(np.asarray(a["round_seconds"]) / np.asarray(b["round_seconds"])), sample="rounds")


def proportion_difference(k1, n1, k2, n2):
    """(k1/n1 - k2/n2, its variance) of two independent counts. The variance adds one image right and one wrong to
    each count (Agresti and Caffo's adjustment), so that an accuracy of 0 or 100% does not claim certainty."""
    q1, q2 = (k1 + 1) / (n1 + 2), (k2 + 1) / (n2 + 2)
    return k1 / n1 - k2 / n2, q1 * (1 - q1) / (n1 + 2) + q2 * (1 - q2) / (n2 + 2)


def train_val_gap(run):
    """(gap, variance): a run's last-epoch train top-1 (on its augmented batches) minus its validation top-1, as
    the trainer logged them (proportions)."""
    logged, last = run.metrics, run.history.iloc[-1]
    n_val = int(last["val_images"])
    return proportion_difference(round(logged["train_acc1"] * logged["train_images"] / 100), logged["train_images"],
                                 round(logged["val_acc1"] * n_val / 100), n_val)


def mean_effect(values, sample="images"):
    """The mean of per-item values with its Student t standard error; a single value (a dry run's one round) is a
    single measurement (Exact)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return Exact(float(values.mean()), sample)
    return Normal(float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size)), df=values.size - 1,
                  sample=sample)


def converged_share(val_acc1):
    """The share of a run's epochs after which its validation top-1 (per epoch) first reaches ledger.CONVERGED of
    its final value."""
    curve = np.asarray(val_acc1, dtype=float)
    reached = np.flatnonzero(curve >= ledger.CONVERGED * curve[-1])[0]
    return (reached + 1) / curve.size


# ----------------------------------------------------------------------------- the claims

def claim_1(conv_costs):
    ratio = conv_costs["custom"]["peak_memory_mb"] / conv_costs["native"]["peak_memory_mb"]
    return [Part("peak memory, custom / native", Exact(ratio), "above", ledger.CLEAR_MEMORY, "x")]


def claim_2(conv_costs):
    return [Part("step time, custom / native", log_ratio_effect(conv_costs["custom"], conv_costs["native"]),
                 "above", math.log(1 + ledger.COST_MARGIN), "ratio")]


def claim_3(correct):
    return [Part("top-1, ImprovedNet - SimpleNet", paired_effect(correct["improvednet"], correct["simplenet"]),
                 "above", ledger.ACCURACY_MARGIN)]


def claim_4(simplenet):
    gap, variance = train_val_gap(simplenet)
    return [Part("SimpleNet train - val top-1", Normal(gap, math.sqrt(variance)), "within", ledger.CLOSE_GAP)]


def claim_5(resnet, correct, pretrained):
    """Not testable (the ledger's reason, a str) unless ResNet-18 started from ImageNet weights."""
    if not pretrained:
        return ledger.BY_NUMBER[5].untestable
    gap, variance = train_val_gap(resnet)
    parts = [Part("ResNet-18 train - val top-1", Normal(gap, math.sqrt(variance)), "above", ledger.LARGE_GAP)]
    return parts + [Part(f"top-1, ResNet-18 - {name}", paired_effect(correct["resnet18"], others), "above",
                         ledger.ACCURACY_MARGIN) for name, others in correct.items() if name != "resnet18"]


def _epoch_difference(history, later, earlier):
    n = int(history["val_images"].iloc[-1])
    k = [round(history["val_acc1"].iloc[i] * n / 100) for i in (later, earlier)]
    difference, variance = proportion_difference(k[0], n, k[1], n)
    return Normal(difference, math.sqrt(variance))


def claim_6(vit):
    """Not testable (a reason, a str) with fewer than two epochs."""
    history = vit.history
    if len(history) < 2:
        return "the ViT trained for a single epoch, so its validation top-1 has no course to judge"
    best = int(history["val_acc1"].to_numpy().argmax())
    return [Part("ViT val top-1, last - first epoch", _epoch_difference(history, -1, 0), "above",
                 ledger.ACCURACY_MARGIN),
            Part("ViT val top-1, last - best epoch", _epoch_difference(history, -1, best), "above",
                 -ledger.ACCURACY_MARGIN)]


def claim_7(vit, simplenet):
    share = converged_share(vit.history["val_acc1"]) - converged_share(simplenet.history["val_acc1"])
    return [Part(f"share of training to {ledger.CONVERGED:.0%} of final top-1, ViT - SimpleNet", Exact(share),
                 "above", ledger.CONVERGENCE_MARGIN, "share")]


def claim_8(vit_costs, correct):
    memory = vit_costs["window"]["peak_memory_mb"] / vit_costs["global"]["peak_memory_mb"]
    return [Part("step time, window / global", log_ratio_effect(vit_costs["window"], vit_costs["global"]), "below",
                 math.log(1 - ledger.COST_MARGIN), "ratio"),
            Part("peak memory, window / global", Exact(memory), "below", 1 - ledger.COST_MARGIN, "x"),
            Part("top-1, window - global", paired_effect(correct["vit"], correct["vit_global"]), "within",
                 ledger.ACCURACY_MARGIN)]


def claim_9(cnn_vs_vit):
    return [Part("step time, ViT / SimpleNet", log_ratio_effect(cnn_vs_vit["vit"], cnn_vs_vit["cnn"]), "above",
                 math.log(ledger.SEVERAL), "ratio")]


def claim_10(vit, simplenet):
    (cnn_gap, cnn_var), (vit_gap, vit_var) = train_val_gap(simplenet), train_val_gap(vit)
    return [Part("train - val gap, SimpleNet - ViT", Normal(cnn_gap - vit_gap, math.sqrt(cnn_var + vit_var)),
                 "above", ledger.ACCURACY_MARGIN)]


def claim_11(attacked):
    """attacked: SimpleNet's per_image arrays under the default attack (first seed)."""
    n = len(attacked["adv_rank"])
    return [Part("SimpleNet top-1 under attack", Binomial(int((attacked["adv_rank"] < 1).sum()), n), "below",
                 ledger.CHANCE_TOP1, "percent"),
            Part("SimpleNet top-5 under attack", Binomial(int((attacked["adv_rank"] < 5).sum()), n), "below",
                 ledger.CHANCE_TOP5, "percent")]


def claim_12(attacked):
    """Images the attack left unchanged (MSE 0, infinite PSNR) are left out of the mean."""
    mse = np.asarray(attacked["mse"])
    return [Part("PSNR of the adversarial samples", mean_effect(-10 * np.log10(mse[mse > 0])), "above",
                 ledger.SAME_LOOKING_PSNR, "dB")]


def claim_13(default_row, longer_row):
    """default_row, longer_row: rows of lib.report.analysis.steps_grid on the same images (the default attack's
    cell and LONGER_ATTACK's)."""
    default, longer = default_row["per_image"], longer_row["per_image"]
    return [Part("top-1 under attack, default - longer", paired_effect([default["adv_rank"] < 1],
                                                                       [longer["adv_rank"] < 1]),
                 "above", ledger.ACCURACY_MARGIN),
            Part("L2 change, longer - default", mean_effect(255 * (longer["l2"] - default["l2"])), "below",
                 0.0, "l2")]


def claim_14(adv_correct, plain_correct):
    """Per-image top-1 correctness under the default attack, one array per seed, on the same images."""
    return [Part("top-1 under attack, AdvSimpleNet - SimpleNet", paired_effect(adv_correct, plain_correct),
                 "above", ledger.FAR_MARGIN)]


def claim_15(plain, adv):
    ratio = plain.metrics["provenance"]["images_per_s"] / adv.metrics["provenance"]["images_per_s"]
    return [Part("training time per image, AdvSimpleNet / SimpleNet", Exact(ratio), "above",
                 1 + ledger.COST_MARGIN, "x")]


# ----------------------------------------------------------------------------- deciding and showing

def judge(parts):
    """The ledger judged: parts {number: [Part], or a str saying why the claim is not testable here}, every claim of
    the ledger. Returns one dict per claim, in the ledger's order: claim (lib.report.claims.Claim), parts ([] when
    not testable), reason (why not, else ''), and rules.decide's outcome and p values."""
    missing = set(ledger.BY_NUMBER) - set(parts)
    if missing:
        raise ValueError(f"claims {sorted(missing)} of the ledger have no measurement")
    reasons = {n: p for n, p in parts.items() if isinstance(p, str)}
    decided = rules.decide({n: None if n in reasons else p for n, p in parts.items()})
    return [dict(claim=claim, parts=[] if claim.number in reasons else parts[claim.number],
                 reason=reasons.get(claim.number, ""), **decided[claim.number]) for claim in ledger.CLAIMS]


# unit: (from the part's value to the unit, number format, suffix in text, name on an axis)
UNITS = {"points": (lambda v: 100 * v, "{:+.1f}", " points", "points"),
         "percent": (lambda v: 100 * v, "{:.2f}", "%", "%"), "ratio": (math.exp, "{:.2f}", "x", "x"),
         "x": (lambda v: v, "{:.2f}", "x", "x"), "dB": (lambda v: v, "{:.1f}", " dB", "dB"),
         "share": (lambda v: v, "{:+.2f}", "", "share of epochs"), "l2": (lambda v: v, "{:+.1f}", "/255", "/255")}


def show(value, unit, suffix=True):
    """A value of a part in its unit, as text: show(0.031, 'points') == '+3.1 points' ('+3.1' without suffix)."""
    to_unit, number, name, _ = UNITS[unit]
    return number.format(to_unit(value)) + (name if suffix else "")


def threshold_text(part):
    """The part's claim on its threshold in words: '> +1.0 points', '|.| < 1.0 points'."""
    if part.kind == "within":
        return "within ±" + show(part.threshold, part.unit).lstrip("+")
    return ("> " if part.kind == "above" else "< ") + show(part.threshold, part.unit)


def part_text(part):
    """'top-1, A - B: +3.1 points [+1.2, +5.0] (claim: > +1.0 points)': a part's estimate, its 95% interval (none for a
    single measurement) and what the claim asks of it."""
    effect = part.effect
    interval = "" if not part.tested else " [{}, {}]".format(*(show(v, part.unit, False) for v in effect.interval()))
    sample = f", n = {effect.n:,}" if isinstance(effect, Binomial) else ""
    return f"{part.name}: {show(effect.estimate, part.unit)}{interval}{sample} (claim: {threshold_text(part)})"


def more_data_text(judged):
    """For an inconclusive claim, how much more data would decide its observed effect, in words ('' otherwise)."""
    if judged["outcome"] != rules.INCONCLUSIVE:
        return ""
    needs = [(part.more_data(), part.effect.sample) for part in judged["parts"] if part.tested]
    needs = [(factor, sample) for factor, sample in needs if factor is not None]
    if not needs:
        return "An observed effect on its threshold is decided by no amount of data."
    factor, sample = max(needs)
    if factor <= 1:
        return ("At this n the observed effect would be decided alone; the correction for testing the ledger's "
                "claims together leaves it open.")
    return (f"Deciding the observed effect would take about {factor:,.1f} times as many {sample} "
            f"({rules.POWER:.0%} power).")

"""The report's prose: a computed paragraph is a template over facts computed before it.

A notebook computes its facts first (numbers, and phrases from the functions below), then shows one template
rendered with them: `say("Top-1 is {top1} after {epochs} epochs.", top1=..., epochs=...)`. A placeholder is a
plain name with an optional format spec (`{ratio:.2f}`, `{images:,}`), so no expression, attribute or index
can hide inside a sentence. Wording that depends on a result ("above", "more often successful") comes from the
named functions here; the reference's claims are judged by the claims ledger (lib.report.claims), not here.
"""
from pathlib import Path
import math
import string

import numpy as np

from lib import attacks, data
from lib.core.devices import PRECISION_NAMES
from lib.report import analysis, stats
from lib.report.claims import SAME_LOOKING_PSNR




def render(template, facts):
    """`template` with every {name} (or {name:spec}) replaced by facts[name], formatted by `spec`. A template's
    lines are wrapped for reading: within a paragraph (paragraphs are separated by a blank line) each line
    break becomes a space, so that no value at the start of a line can read as Markdown (a list, a heading).

    Raises ValueError for a placeholder that is not a plain name, names a missing fact, or a fact that is None.
    """
    template = "\n\n".join(" ".join(paragraph.split()) for paragraph in template.split("\n\n"))
    for _, field, _, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or conversion:
            raise ValueError(f"template placeholder {{{field}}} must be a plain name; compute the value into a "
                             "fact first")
        if field not in facts:
            raise ValueError(f"template placeholder {{{field}}} has no fact; facts: {', '.join(sorted(facts))}")
        if facts[field] is None:
            raise ValueError(f"fact {field!r} of a template is None; give it a value or a phrase")
    return template.format_map(facts)


def say(template, facts=None, **more):
    """Show `template` rendered with `facts` and `more` (see `render`) as Markdown in the notebook. IPython is
    imported here, not with the module: nothing below lib/report/build.py needs the Jupyter stack to import."""
    from IPython.display import Markdown, display
    display(Markdown(render(template, {**(facts or {}), **more})))


def prefixed(groups):
    """One dict of facts from several: prefixed({"cnn": {"acc": 1}, "vit": {"acc": 2}}) == {"cnn_acc": 1,
    "vit_acc": 2}."""
    return {f"{prefix}_{key}": value for prefix, facts in groups.items() for key, value in facts.items()}


def accuracy_facts(run, device="auto"):
    """Facts on a finished run's accuracy. On the validation set (its final model's predictions): n images,
    per-image correctness `correct` (bool (n,)), top1 as a sentence's '7.0% [3.4, 13.7] (n = 100)' and
    top1_cell / top5_cell as a table's '7.0 [3.4, 13.7]' (95% Wilson intervals). From the trainer's log: epochs,
    the last epoch's train top-1 on its augmented batches (train, train_cell; over train_images) and gap, train
    minus validation top-1 in points; the validation top-1 after the first epoch (first, first_cell)."""
    predictions = analysis.predictions(run, device=device)
    top1, top5 = analysis.correct(predictions), analysis.correct(predictions, k=5)
    n, logged, epoch1 = len(top1), run.metrics, run.history.iloc[0]
    train = (stats.count(logged["train_acc1"], logged["train_images"]), logged["train_images"])
    first = (stats.count(epoch1["val_acc1"], epoch1["val_images"]), int(epoch1["val_images"]))
    return dict(n=n, correct=top1, top1=stats.describe(int(top1.sum()), n),
                top1_cell=stats.interval_cell(int(top1.sum()), n), top5_cell=stats.interval_cell(int(top5.sum()), n),
                epochs=logged["epochs"], train=stats.describe(*train), train_cell=stats.interval_cell(*train),
                train_images=logged["train_images"], gap=logged["train_acc1"] - logged["val_acc1"],
                first=stats.describe(*first), first_cell=stats.interval_cell(*first))


def seeds_correct(runs, device="auto"):
    """Per-image top-1 correctness on the validation set (bool (n,)) of each of `runs` (one per training seed), a
    list in the order of `runs`."""
    return [accuracy_facts(run, device)["correct"] for run in runs]


def provenance_facts(run):
    """Where a run was made, for a sentence: data (its data set, `dataset_name`) and hardware (the device it
    trained on)."""
    return dict(data=dataset_name(run.config), hardware=run.metrics["provenance"]["device"])


def attack_facts(result):
    """Facts on an evaluation under attack (a summary of lib.report.analysis.under_attack, or a row of a
    robustness curve or steps grid): n images; for clean / adv (attacked) and top-1 / top-5, per-image
    correctness clean1, clean5, adv1, adv5 (bool (n,)), each as a sentence's '<name>_text' and a table's
    '<name>_cell'; per-image success (bool (n,); lib.attacks.successes) and the success rate as success_text and
    success_cell."""
    n = result["num_images"]
    facts = dict(n=n, success=attacks.successes(result["per_image"])[0],
                 success_text=stats.describe(result["successes"], result["success_images"]),
                 success_cell=stats.interval_cell(result["successes"], result["success_images"]))
    for when in ("clean", "adv"):
        for k in (1, 5):
            correct = analysis.correct(result["per_image"], k=k, when=when)
            facts.update({f"{when}{k}": correct, f"{when}{k}_text": stats.describe(int(correct.sum()), n),
                          f"{when}{k}_cell": stats.interval_cell(int(correct.sum()), n)})
    return facts


def dataset_name(cfg):
    """The data set of a run configuration by name, never by path: 'the embedded sample (miniplaces-sample)'
    or the data directory's name."""
    root = Path(cfg["data_dir"])
    return (f"the embedded sample ({root.name})" if root.resolve() == data.SAMPLE_ROOT.resolve()
            else f"`{root.name}`")


def precision(name):
    """The report's name of a precision ('fp32', 'bf16'): 'IEEE fp32' (no TF32) or 'bf16 autocast'."""
    return PRECISION_NAMES[name]


def span(counts):
    """'50' when every count (a tensor or sequence of ints) is the same, else 'lowest-highest'."""
    low, high = int(min(counts)), int(max(counts))
    return f"{low}" if low == high else f"{low}-{high}"


def between(values, scale=1):
    """'8-100': the lowest and highest of a (low, high) pair, times `scale`, in the shortest form."""
    low, high = values
    return f"{scale * low:g}-{scale * high:g}"


def subset(cfg):
    """', on a subset of 500 training and 100 validation images' when a run configuration uses a subset of the
    data set, else ''."""
    if not cfg["train_images"]:
        return ""
    return f", on a subset of {cfg['train_images']} training and {cfg['val_images']} validation images"


def dataset_label(cfg):
    """The data set of a run configuration by its directory's name (never a path), with the training /
    validation images used when a profile takes a subset: 'miniplaces-sample (500 / 100)'."""
    name = Path(cfg["data_dir"]).name
    return name + (f" ({cfg['train_images']:,} / {cfg['val_images']:,})" if cfg["train_images"] else "")


def short_commit(commit):
    """A git commit of a run's provenance in 10 characters, with '+' when it had uncommitted changes."""
    return commit[:10] + ("+" if commit.endswith("-dirty") else "")


def differences(used, reference, name="reference"):
    """'Settings that differ from the reference: depth 2 (reference 4); ...' or 'These are the reference
    settings.': the keys of `reference` whose value in `used` differs ({setting: value} dicts)."""
    changed = [f"{key.replace('_', ' ')} {used[key]} ({name} {value})" for key, value in reference.items()
               if used[key] != value]
    return (f"Settings that differ from the {name}: {'; '.join(changed)}." if changed
            else f"These are the {name} settings.")


def resnet_start(pretrained):
    """How ResNet-18 started: from ImageNet weights, or from random ones when they were not available."""
    return ("fine-tuned from torchvision's ImageNet weights" if pretrained else
            "trained from random initialisation, because torchvision's ImageNet weights were not available offline")


def convergence(first, second):
    """Facts on two validation top-1 curves (per epoch): epochs (compared: the shorter run's) and ahead (epochs
    after which the first is higher). The claim that one converges more slowly is judged by the ledger (claim 7)."""
    epochs = min(len(first), len(second))
    return dict(epochs=epochs, ahead=int((np.asarray(first)[:epochs] > np.asarray(second)[:epochs]).sum()))


def kept_under_attack(clean_acc1, adv_acc1):
    """What share of the clean top-1 (percent) is left under attack, in words."""
    if not clean_acc1:
        return "here the model classifies none of these images correctly to begin with."
    return f"here the attacked top-1 is {adv_acc1 / clean_acc1:.0%} of the clean top-1."


def psnr_side(psnr):
    """'above' or 'below' the ledger's SAME_LOOKING_PSNR dB."""
    return "above" if psnr > SAME_LOOKING_PSNR else "below"


def epsilon_trade(pair):
    """What a paired comparison of success (more steps at a smaller epsilon minus fewer at a larger one) says
    about trading epsilon for iterations; empty when the execution cannot tell the two apart."""
    if not stats.significant(pair):
        return ""
    if pair["difference"] < 0:
        return ("More iterations do not make up for a smaller epsilon here: epsilon bounds how far the image may "
                "move.")
    return "More iterations more than make up for a smaller epsilon here."


def epsilon_for_iterations(diagonal):
    """Sentences on trading epsilon for iterations over `diagonal`, the rows of lib.report.analysis.steps_grid
    (fewest steps first) whose steps x epsilon scale is the default attack's: each row's success rate, top-1
    and PSNR, and the paired comparison of the last row's successes with the first's. Empty when there are
    fewer than two rows."""
    if len(diagonal) < 2:
        return ""
    facts = [attack_facts(row) for row in diagonal]
    labels = [f"{row['steps']} steps at epsilon {255 * row['epsilon']:.2f}/255" for row in diagonal]
    rows = "; ".join(f"{label} reach the target on {row['success_text']}, with top-1 {row['adv1_text']} and "
                     f"{psnr:.1f} dB PSNR" for label, row, psnr in zip(labels, facts, (r["psnr"] for r in diagonal)))
    trade = stats.paired_difference(facts[-1]["success"], facts[0]["success"])
    compared = stats.describe_pair(trade, labels[-1], labels[0], ahead="more often successful")
    return " ".join(filter(None, [f"Trading epsilon for iterations, {rows}. {compared}", epsilon_trade(trade)]))


def ahead_at(curve_pairs, n):
    """The epsilons (/255) at which model A is significantly ahead, from [(epsilon, paired_difference(A, B))]
    over a robustness curve of n images, in a sentence."""
    ahead = [f"{eps:g}" for eps, pair in curve_pairs if stats.significant(pair) and pair["difference"] > 0]
    if ahead:
        return f"AdvSimpleNet is ahead, with p < {stats.SIGNIFICANCE:g}, at epsilon {', '.join(ahead)} (/255)."
    return f"At none of these epsilons can this execution tell AdvSimpleNet ahead at this n ({n:,} images)."


def same_settings(cfg, other, keys, name="SimpleNet"):
    """Which of `keys` two configurations set differently, in a sentence."""
    changed = [key for key in keys if cfg[key] != other[key]]
    if changed:
        return f"It differs from this profile's {name} in {', '.join(changed)}."
    return f"Apart from the epochs and the adversarial samples its settings are {name}'s in this profile."


def epochs(count):
    """'1 epoch', '4 epochs'."""
    return f"{count} epoch" + ("" if count == 1 else "s")


def crafting_against_reference(crafting, reference):
    """A sentence naming how AdvSimpleNet's crafting attack differs from the reference's, else empty.

    crafting, reference: {num_steps, step_size, epsilon}, pixel units (epsilon and step in [0, 1])."""
    said = {"num_steps": f"{reference['num_steps']:.0f} steps",
            "step_size": f"step {255 * reference['step_size']:.3g}/255",
            "epsilon": f"epsilon {255 * reference['epsilon']:.3g}/255"}
    changed = [text for key, text in said.items() if not math.isclose(crafting[key], reference[key])]
    if not changed:
        return ""
    listed = f"{', '.join(changed[:-1])} and {changed[-1]}" if len(changed) > 1 else changed[0]
    smaller = (", so this AdvSimpleNet is trained for smaller perturbations than the reference's"
               if crafting["epsilon"] < reference["epsilon"] else "")
    return f"The reference crafts its training samples with {listed}{smaller}."


def epsilon_warm_up(ramp_epochs):
    """AdvSimpleNet's epsilon warm-up (ramp_epochs, epochs; 0: none) in a sentence, else empty."""
    if not ramp_epochs:
        return ""
    return (f"Epsilon and step grow linearly from 0 over the first {ramp_epochs:g} epoch(s) of this training (an "
            "epsilon warm-up), then stay at these values.")


def starting_point(init_from, reference_epochs):
    """Whether AdvSimpleNet was fine-tuned from the trained run `init_from` (a name or None), in a sentence."""
    if init_from:
        return (f"In this profile AdvSimpleNet does not start from random weights: it is fine-tuned adversarially "
                f"from the trained `{init_from}` run, because PGD training from scratch stays at chance level for "
                f"longer than the profile's budget (the reference trained from scratch for {reference_epochs} "
                "epochs).")
    return "It starts from random weights, as in the reference."


def devices_compared(device_a, device_b):
    """Whether two runs' times compare like with like (same device), in a clause ending in '; '."""
    if device_a == device_b:
        return "Both runs trained on the same device; "
    return (f"The runs trained on different devices ({device_a} and {device_b}), so the ratio mixes hardware "
            "with method; ")


def below_expected(ratio, expected):
    """A warning when a measured time ratio is under half the expected one (else empty)."""
    if ratio < 0.5 * expected:
        return ("A ratio below the expected one by this much says more about the load on the machine during the "
                "two runs than about the method.")
    return ""

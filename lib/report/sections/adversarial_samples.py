"""Section 4, adversarial samples (notebook 03): the facts and tables on SimpleNet under the default PGD attack,
the steps x epsilon grid, the robustness curve and the stronger attacks.

`result` is an under-attack summary of lib.report.analysis.under_attack (accuracies in %, per-image arrays);
epsilons are pixel units in [0, 1] in the analyses and /255 in every fact and table.
"""
from lib import attacks, data, study
from lib.report import analysis, findings, prose, stats, tables
from lib.report.claims import SAME_LOOKING_PSNR


def attack_settings(profile, dry_run, attack):
    """(settings, default): the notebooks' attacks in pixel units (lib.study.attack_settings with the notebook's
    `attack` overrides) and the default attack, a PGDAttack."""
    settings = study.attack_settings(profile, dry_run=dry_run, **attack)
    return settings, attacks.PGDAttack(**settings["default"])


def setting_facts(run, default, result, profile, device="auto"):
    """Facts on what was trained and attacked: profile, epochs, size (px), data, hardware, n (attacked images),
    precision (of the analyses), val_size (validation images), step and epsilon (/255) and steps of `default`."""
    cfg = run.config
    return dict(profile=profile, epochs=cfg["epochs"], size=cfg["image_size"], data=prose.dataset_name(cfg),
                hardware=run.metrics["provenance"]["device"], n=result["num_images"],
                precision=prose.precision(analysis.PRECISION),
                val_size=len(analysis.predictions(run, device=device)["label"]), step=255 * default.step_size,
                steps=default.num_steps, epsilon=255 * default.epsilon)


def harness_attack_facts():
    """Facts on the original harness's default attack, given in normalised units: norm_steps, norm_step,
    norm_epsilon; std (ImageNet's per channel, rounded), mean_std (pixel units per normalised unit) and
    per_channel, its epsilon in /255 per channel ('25.69, 25.03, 25.19')."""
    norm = study.ATTACKS["default"]
    return dict(norm_steps=norm["num_steps"], norm_step=norm["step_size"], norm_epsilon=norm["epsilon"],
                std=tuple(round(s, 3) for s in data.IMAGENET_STD), mean_std=attacks.PIXEL_PER_NORMALIZED,
                per_channel=", ".join(f"{255 * norm['epsilon'] * s:.2f}" for s in data.IMAGENET_STD))


def attack_label(attack):
    """'PGD-10, epsilon 25.50/255': a PGD attack by its steps and epsilon."""
    return f"PGD-{attack.num_steps}, epsilon {255 * attack.epsilon:.2f}/255"


def accuracy_table(result, default, number):
    """Table: SimpleNet's top-1 and top-5 (%, 95% intervals) on the attacked images without and with the
    `default` attack, one row each, beside the reference report's numbers."""
    facts = prose.attack_facts(result)
    rows = [{"": label, "top-1 (%)\n[95% CI]": facts[f"{when}1_cell"], "top-5 (%)\n[95% CI]": facts[f"{when}5_cell"],
             **findings.reference_cells("simplenet", when == "adv", epochs=False)}
            for label, when in (("without attack", "clean"), (attack_label(default), "adv"))]
    return tables.Table(rows, f"SimpleNet's accuracy on the n = {result['num_images']:,} attacked validation images "
                        "without and with the default attack, beside the reference report's numbers (full data, "
                        "128 x 128 images, GPU).", number)


def drop_facts(result):
    """prose.attack_facts of `result` and: reference_clean, reference_attacked (the reference's SimpleNet top-1, %,
    clean and attacked), drop (the paired clean vs attacked comparison in words) and kept (the share of the clean
    top-1 left)."""
    facts = prose.attack_facts(result)
    return dict(facts, reference_clean=findings.REFERENCE["simplenet"][1],
                reference_attacked=findings.REFERENCE_ATTACKED["simplenet"][0],
                drop=stats.describe_pair(stats.paired_difference(facts["clean1"], facts["adv1"]), "clean", "attacked"),
                kept=prose.kept_under_attack(result["clean_acc1"], result["adv_acc1"]))


def strong_attack_facts(compare, strong):
    """Facts on one model under the stronger attacks. compare: lib.report.analysis.attack_comparison (name ->
    per-image top-1 correctness (n,)); strong: their settings (steps). Returns steps, n, pgd_name, and top-1 as
    sentences under APGD-CE (ce), APGD-T (dlr), the default PGD (pgd) and the worst case of the three (worst)."""
    n, pgd_name = len(compare["clean"]), list(compare)[1]
    return dict(steps=strong["num_steps"], n=n, pgd_name=pgd_name,
                **{key: stats.describe(int(compare[name].sum()), n) for key, name in
                   (("ce", "APGD-CE"), ("dlr", "APGD-T (DLR)"), ("pgd", pgd_name), ("worst", "worst case"))})


def example_captions(shown, data_dir):
    """Two captions per example of lib.report.analysis.adversarial_examples, with class names from the data set at
    `data_dir`: [('true: <class>\\npred: <class>', 'pred: <class>\\ntarget: <class>')], one pair per image."""
    classes = [name.strip("/")[2:] for name in data.read_categories(data_dir)]
    return [(f"true: {classes[y]}\npred: {classes[p]}", f"pred: {classes[a]}\ntarget: {classes[t]}")
            for y, p, a, t in zip(shown["label"], shown["clean_pred"], shown["adv_pred"], shown["target"])]


def example_facts(shown):
    """Counts over the examples of lib.report.analysis.adversarial_examples: shown (images), target (reached the
    attack's target), changed (prediction changed), right and right_adversarial (correct before and after)."""
    return dict(shown=len(shown["label"]), target=int((shown["adv_pred"] == shown["target"]).sum()),
                changed=int((shown["adv_pred"] != shown["clean_pred"]).sum()),
                right=int((shown["clean_pred"] == shown["label"]).sum()),
                right_adversarial=int((shown["adv_pred"] == shown["label"]).sum()))


def perturbation_facts(result, attack, size):
    """Facts on the size of an attack's perturbation on `size` x `size` images: linf and epsilon (/255), l2 and
    full_l2 (L2 norm of the perturbation and of a change of +-epsilon in every value, [0, 1] units), share
    (l2 / full_l2), psnr (dB), side ('above' / 'below' imperceptible) and imperceptible (dB)."""
    full_l2 = attack.epsilon * (3 * size * size) ** 0.5
    return dict(linf=255 * result["linf"], epsilon=255 * attack.epsilon, l2=result["l2"], full_l2=full_l2,
                share=result["l2"] / full_l2, psnr=result["psnr"], side=prose.psnr_side(result["psnr"]),
                imperceptible=SAME_LOOKING_PSNR)


def perturbation_table(result, attack, size, number):
    """Table: one row of the perturbation's size (perturbation_facts): epsilon, mean L-inf, mean L2, the L2 of a
    full-epsilon change and the PSNR."""
    facts = perturbation_facts(result, attack, size)
    row = {"epsilon (/255)": facts["epsilon"], "mean L-inf (/255)": facts["linf"], "mean L2": facts["l2"],
           "L2 of a full-epsilon change": facts["full_l2"], "PSNR (dB)": facts["psnr"]}
    return tables.Table([row], f"Size of the default attack's perturbation over the n = {result['num_images']:,} "
                        "attacked images: its L-infinity norm (the largest change of any pixel channel), its L2 norm "
                        "(over all 3 x H x W values, in [0, 1] units) and the peak signal-to-noise ratio of the "
                        "adversarial images (10 log10(1 / mean squared change)).", number)


def _grid_cells(grid):
    """(steps sorted, scales sorted, {(steps, scale): row}, {scale: epsilon /255}) of a steps grid."""
    return (sorted({row["steps"] for row in grid}), sorted({row["scale"] for row in grid}),
            {(row["steps"], row["scale"]): row for row in grid}, {row["scale"]: 255 * row["epsilon"] for row in grid})


def grid_table(grid, number):
    """Table of lib.report.analysis.steps_grid: one row per number of steps, one column per epsilon (/255), each
    cell 'targeted success rate (%) / PSNR (dB)'."""
    steps_list, scales, cell, eps_of = _grid_cells(grid)
    rows = [{"steps": steps, **{f"{eps_of[s]:.2f}/255": f"{cell[(steps, s)]['success_rate']:.1f} / "
                                f"{cell[(steps, s)]['psnr']:.1f}" for s in scales}} for steps in steps_list]
    return tables.Table(rows, f"The grid of Figure 4.2: targeted success rate (%) / PSNR (dB) for each number of "
                        f"steps (rows) and epsilon (columns), n = {grid[0]['num_images']:,} images.", number)


def grid_facts(grid, default):
    """Facts on a steps grid: fewest and most steps, by_epsilon (the paired change of the success rate from the
    fewest to the most steps at each epsilon, in words) and trade (prose.epsilon_for_iterations over the grid's
    cells whose steps x epsilon scale equals the `default` attack's steps)."""
    steps_list, scales, cell, eps_of = _grid_cells(grid)
    most, fewest = max(steps_list), min(steps_list)
    hit = {key: prose.attack_facts(row)["success"] for key, row in cell.items()}  # per image: reached the target
    longer = {s: stats.paired_difference(hit[(most, s)], hit[(fewest, s)]) for s in scales}
    diagonal = [cell[(s, c)] for s in steps_list for c in scales if (s, c) in cell and s * c == default.num_steps]
    return dict(fewest=fewest, most=most, trade=prose.epsilon_for_iterations(diagonal),
                by_epsilon=", ".join(f"{stats.difference_phrase(longer[s])} at epsilon {eps_of[s]:.2f}/255"
                                     for s in scales))


def curve_table(curve, number):
    """Table of a robustness curve (lib.report.analysis.robustness_curve): one row per epsilon (/255) with top-1,
    top-5 and success rate (%, 95% intervals), mean L-inf (/255), mean L2 and PSNR (dB)."""
    rows = []
    for row in curve:
        facts = prose.attack_facts(row)
        rows.append({"epsilon (/255)": 255 * row["epsilon"], "top-1 (%)\n[95% CI]": facts["adv1_cell"],
                     "top-5 (%)\n[95% CI]": facts["adv5_cell"], "success rate (%)\n[95% CI]": facts["success_cell"],
                     "mean L-inf\n(/255)": 255 * row["linf"], "mean L2": row["l2"], "PSNR (dB)": row["psnr"]})
    return tables.Table(rows, f"The numbers of Figure 4.3 with the perturbation statistics at each epsilon (n = "
                        f"{curve[0]['num_images']:,} images).", number,
                        digits={"epsilon (/255)": 0, "mean L-inf\n(/255)": 2, "mean L2": 2, "PSNR (dB)": 1})


def curve_end_facts(curve):
    """prose.attack_facts at the curve's largest epsilon and: epsilon (/255), psnr (dB) and drop (the paired clean
    vs attacked comparison there, in words)."""
    facts = prose.attack_facts(curve[-1])
    return dict(facts, epsilon=255 * curve[-1]["epsilon"], psnr=curve[-1]["psnr"],
                drop=stats.describe_pair(stats.paired_difference(facts["clean1"], facts["adv1"]), "Clean", "attacked"))

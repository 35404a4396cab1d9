"""Section 5, adversarial training (notebook 04): the facts and tables comparing AdvSimpleNet with SimpleNet,
clean, under the default attack, under the stronger attacks, and in training cost.

Both models come as dicts keyed 'plain' (SimpleNet) and 'adv' (AdvSimpleNet): `runs` of finished lib.study.Runs,
`results` of lib.report.analysis.under_attack summaries on the same images, `compare` of per-seed lists of
lib.report.analysis.attack_comparison (name -> per-image top-1 correctness (n,)). Accuracies are in %, epsilons
in /255, times in seconds.
"""
from lib import data, study
from lib.report import analysis, findings, prose, stats, tables
from lib.report.sections.adversarial_samples import attack_label


NAMES = {"plain": "SimpleNet", "adv": "AdvSimpleNet"}
EXPERIMENT_NAMES = {"plain": "simplenet", "adv": "advsimplenet"}  # in the registry and the reference's numbers


def setting_facts(runs, results, profile, device="auto"):
    """Facts on what was trained and attacked: profile, size (px), data; plain_epochs, plain_device, adv_epochs,
    adv_device (each model's epochs, as '4 epochs', and training device); n (attacked images) and val_size (validation images)."""
    cfg, trained_on = runs["adv"].config, {key: run.metrics["provenance"]["device"] for key, run in runs.items()}
    return dict(profile=profile, size=cfg["image_size"], data=prose.dataset_name(cfg),
                plain_epochs=prose.epochs(runs["plain"].config["epochs"]), plain_device=trained_on["plain"],
                adv_epochs=prose.epochs(cfg["epochs"]), adv_device=trained_on["adv"], n=results["plain"]["num_images"],
                val_size=len(analysis.predictions(runs["plain"], device=device)["label"]))


def crafting_facts(runs):
    """Facts on how AdvSimpleNet was trained: its crafting attack's steps, step and epsilon (/255) and its epsilon
    warm-up (ramp, a sentence or empty); precision (of
    its training step) and attack_precision (of the evaluations); optimizer, lr, warmup (epochs), batch;
    reference_epochs; differences (its settings against SimpleNet's), start (its initial weights) and against_reference
    (its crafting against the reference's, lib.study.ADVERSARIAL_TRAINING), in words."""
    cfg, plain_cfg = runs["adv"].config, runs["plain"].config
    hook = study.input_hook(cfg)
    crafting = hook.attack
    keys = ("image_size", "batch_size", "lr", "weight_decay", "warmup_epochs", "optimizer")
    return dict(steps=crafting.num_steps, step=255 * crafting.step_size, epsilon=255 * crafting.epsilon,
                ramp=prose.epsilon_warm_up(hook.ramp_epochs),
                precision=prose.precision("bf16" if runs["adv"].metrics["provenance"]["amp"] == "bf16" else "fp32"),
                attack_precision=prose.precision(analysis.PRECISION), optimizer=cfg["optimizer"], lr=cfg["lr"],
                warmup=cfg["warmup_epochs"], batch=cfg["batch_size"],
                reference_epochs=findings.REFERENCE["advsimplenet"][0],
                differences=prose.same_settings(cfg, plain_cfg, keys),
                start=prose.starting_point(cfg["init_from"], findings.REFERENCE["advsimplenet"][0]),
                against_reference=prose.crafting_against_reference(crafting.settings(), study.ADVERSARIAL_TRAINING))


def last_epoch_facts(runs):
    """Facts from the trainer's log of the last epochs, as sentences with 95% intervals: AdvSimpleNet's top-1 on
    its adversarial training samples (adversarial), on the same batches before the attack (clean) and on the
    validation set (val); SimpleNet's validation top-1 (plain_val) and epochs (plain_epochs, as '4 epochs'); chance (%)."""
    adv_last, plain_last = runs["adv"].history.iloc[-1], runs["plain"].history.iloc[-1]
    seen, val_seen = int(adv_last["train_images"]), int(adv_last["val_images"])
    return dict(adversarial=stats.describe(stats.count(adv_last["train_acc1"], seen), seen),
                clean=stats.describe(stats.count(adv_last["train_clean_acc1"], seen), seen),
                val=stats.describe(stats.count(adv_last["val_acc1"], val_seen), val_seen),
                chance=100 / data.NUM_CLASSES,
                plain_val=stats.describe(stats.count(plain_last["val_acc1"], plain_last["val_images"]),
                                         int(plain_last["val_images"])),
                plain_epochs=prose.epochs(len(runs["plain"].history)))


def robustness_table(runs, results, default, number):
    """Table (transposed: one column per model): epochs, clean and attacked top-1, attacked top-5 and the
    attack's success rate (%, 95% intervals) under `default`, and the reference's clean and attacked top-1."""
    rows = []
    for key, result in results.items():
        a = prose.attack_facts(result)
        rows.append({"model": NAMES[key], "epochs": runs[key].config["epochs"],
                     "clean top-1 (%)\n[95% CI]": a["clean1_cell"], "attacked top-1 (%)\n[95% CI]": a["adv1_cell"],
                     "attacked top-5 (%)\n[95% CI]": a["adv5_cell"], "success rate (%)\n[95% CI]": a["success_cell"],
                     "reference clean\ntop-1 (%)": findings.REFERENCE[EXPERIMENT_NAMES[key]][1],
                     "reference attacked\ntop-1 (%)": findings.REFERENCE_ATTACKED[EXPERIMENT_NAMES[key]][0]})
    return tables.Table(rows, f"Both models on the n = {results['plain']['num_images']:,} attacked validation images, "
                        f"clean and under the default attack of section 4 ({attack_label(default)}, "
                        "least-likely target), beside the reference report's numbers (full data, 128 x 128 images, "
                        "GPU; it lists no clean accuracy for AdvSimpleNet).", number, digits=1, transpose=True)


def model_pairs(results):
    """Paired top-1 comparisons (lib.report.stats.paired_difference) of AdvSimpleNet (A) against SimpleNet (B) on
    the attacked images: {'clean': without attack, 'adv': under the attack}."""
    attacked = {key: prose.attack_facts(result) for key, result in results.items()}
    return {when: stats.paired_difference(attacked["adv"][f"{when}1"], attacked["plain"][f"{when}1"])
            for when in ("clean", "adv")}


def pairs_table(results, number):
    """Table: model_pairs as two comparison rows (without attack, under attack): the difference in points with
    its 95% interval, the discordant images and McNemar's p."""
    pairs = model_pairs(results)
    return tables.Table([stats.comparison_row(pairs["clean"], "AdvSimpleNet", "SimpleNet", "without attack"),
                         stats.comparison_row(pairs["adv"], "AdvSimpleNet", "SimpleNet", "under attack")],
                        "AdvSimpleNet (A) against SimpleNet (B) on the same images, paired: top-1 difference with its "
                        "95% interval, discordant images and the exact McNemar p value.", number)


def robustness_facts(results, default):
    """prose.attack_facts of both models, prefixed 'plain_' and 'adv_'; the `default` attack's steps, step and
    epsilon (/255); under_attack and without (model_pairs in words); the reference's attacked top-1 (%) and
    epochs of both (reference_plain, reference_adv, reference_plain_epochs, reference_adv_epochs)."""
    pairs = model_pairs(results)
    return dict(prose.prefixed({key: prose.attack_facts(result) for key, result in results.items()}),
                steps=default.num_steps, step=255 * default.step_size, epsilon=255 * default.epsilon,
                under_attack=stats.describe_pair(pairs["adv"], "AdvSimpleNet", "SimpleNet"),
                without=stats.describe_pair(pairs["clean"], "AdvSimpleNet", "SimpleNet"),
                reference_plain=findings.REFERENCE_ATTACKED["simplenet"][0],
                reference_adv=findings.REFERENCE_ATTACKED["advsimplenet"][0],
                reference_plain_epochs=findings.REFERENCE["simplenet"][0],
                reference_adv_epochs=findings.REFERENCE["advsimplenet"][0])


def curve_facts(curves):
    """Facts on both models' robustness curves (lib.report.analysis.robustness_curve, the same epsilons):
    differences (AdvSimpleNet minus SimpleNet top-1 under attack at each epsilon, in words) and ahead
    (prose.ahead_at: where AdvSimpleNet is significantly ahead)."""
    pairs = [(255 * plain["epsilon"],
              stats.paired_difference(prose.attack_facts(adv)["adv1"], prose.attack_facts(plain)["adv1"]))
             for plain, adv in zip(curves["plain"], curves["adv"])]
    return dict(differences=", ".join(f"{stats.difference_phrase(pair)} at {eps:g}/255" for eps, pair in pairs),
                ahead=prose.ahead_at(pairs, curves["plain"][0]["num_images"]))


def strong_comparisons(seeded, settings, device="auto"):
    """{key: [lib.report.analysis.attack_comparison of each training seed's run]} for seeded = {key: [runs]};
    settings: the notebooks' attacks (attack_settings)."""
    return {key: [analysis.attack_comparison(run, settings, device) for run in group] for key, group in seeded.items()}


def _per_seed(compare):
    """(row label, key, that seed's comparison) for every model and seed; the label names the seed when there are
    several."""
    several = len(compare["plain"]) > 1
    return [(NAMES[key] + (f", seed {i + 1}" if several else ""), key, seed)
            for key, group in compare.items() for i, seed in enumerate(group)]


def strong_attack_table(compare, strong, number):
    """Table (transposed: one column per model and seed): top-1 (%, 95% intervals) clean, under the default PGD,
    APGD-CE, APGD-T and their worst case. strong: the stronger attacks' settings (steps, restarts, target classes,
    epsilon in pixel units)."""
    n, pgd_name = len(compare["plain"][0]["clean"]), list(compare["plain"][0])[1]
    rows = [{"model": label, **{f"{name} top-1 (%)\n[95% CI]": stats.interval_cell(int(ok.sum()), n)
                                for name, ok in seed.items()}} for label, _, seed in _per_seed(compare)]
    return tables.Table(rows, f"Top-1 of both models on n = {n:,} evenly spaced validation images, clean, under the "
                        f"default {pgd_name} and under APGD-CE and APGD-T ({strong['num_steps']} steps, "
                        f"{strong['restarts']} restart(s), {strong['target_classes']} target classes), all at epsilon "
                        f"{255 * strong['epsilon']:.2f}/255, and the worst case over the three attacks.", number,
                        digits=1, transpose=True)


def pgd_against_worst(compare):
    """{key: [paired_difference of top-1 under the default PGD (A) against the worst case (B)], one per seed}."""
    pgd_name = list(compare["plain"][0])[1]
    return {key: [stats.paired_difference(seed[pgd_name], seed["worst case"]) for seed in group]
            for key, group in compare.items()}


def overstatement_table(compare, number):
    """Table: pgd_against_worst as one comparison row per model and seed."""
    n, pgd_name = len(compare["plain"][0]["clean"]), list(compare["plain"][0])[1]
    pairs = [pair for group in pgd_against_worst(compare).values() for pair in group]  # in _per_seed's order
    return tables.Table([stats.comparison_row(pair, pgd_name, "worst case", label)
                         for (label, _, _), pair in zip(_per_seed(compare), pairs)],
                        f"Top-1 under the default PGD (A) against the worst case of all attacks (B), per model, on the "
                        f"same n = {n:,} images: a positive difference is robustness that PGD overstated.", number)


def worst_case_facts(compare, default):
    """Facts on the worst case of every attack: steps (of `default`), n, first (' (first seed)' with several
    seeds), plain and adv (each model's first-seed top-1 in words), plain_overstated and adv_overstated
    (findings.pgd_overstatement) and verdict (AdvSimpleNet against SimpleNet over the seeds, in words)."""
    n, pgd_name = len(compare["plain"][0]["clean"]), list(compare["plain"][0])[1]
    overstated = pgd_against_worst(compare)
    worst = [stats.paired_difference(adv["worst case"], plain["worst case"])
             for adv, plain in zip(compare["adv"], compare["plain"])]
    return dict(steps=default.num_steps, n=n, first=" (first seed)" if len(compare["plain"]) > 1 else "",
                **{key: stats.describe(int(compare[key][0]["worst case"].sum()), n) for key in NAMES},
                **{f"{key}_overstated": findings.pgd_overstatement(overstated[key], name, pgd_name, "the worst case")
                   for key, name in NAMES.items()},
                verdict=findings.describe_seeds(worst, "AdvSimpleNet", "SimpleNet"))


COST_COLUMNS = {"epochs": "epochs", "time": "train time (s)", "epoch": "s / epoch", "rate": "train images / s",
                "mib": "peak memory (MiB)"}


def training_costs(runs):
    """Each run's training cost as logged by the trainer: {'plain', 'adv': {epochs, time (s, the whole run's
    training without validation), epoch (s per epoch), rate (training images / s), mib (peak memory, MiB)},
    'ratio': AdvSimpleNet / SimpleNet of epoch, rate and mib}."""
    cost = {key: dict(epochs=run.config["epochs"], time=run.metrics["provenance"]["train_time_s"],
                      epoch=run.metrics["provenance"]["train_time_s"] / run.config["epochs"],
                      rate=run.metrics["provenance"]["images_per_s"], mib=run.metrics["provenance"]["peak_memory_mb"])
            for key, run in runs.items()}
    cost["ratio"] = {name: cost["adv"][name] / cost["plain"][name] for name in ("epoch", "rate", "mib")}
    return cost


def training_cost_table(runs, number):
    """Table of training_costs: one row per model and one of their ratio."""
    cost = training_costs(runs)
    cost["ratio"] = {name: f"{ratio:.2f}x" for name, ratio in cost["ratio"].items()}  # not the column's decimals
    rows = [{"model": label, **{COST_COLUMNS[name]: value for name, value in cost[key].items()}}
            for key, label in {**NAMES, "ratio": "AdvSimpleNet / SimpleNet"}.items()]
    return tables.Table(rows, "Training time and throughput of both runs as logged by the trainer (the whole run's "
                        "training time without validation, training images per second, and peak memory: on a GPU the "
                        "peak allocated by tensors, on a CPU the process's peak resident memory, which includes the "
                        "cached data set), and their ratio.", number,
                        digits={"epochs": 0, "train time (s)": 1, "s / epoch": 2, "train images / s": 1,
                                "peak memory (MiB)": 0})


def cost_facts(runs):
    """training_costs prefixed 'plain_', 'adv_' and 'ratio_'; steps (of the crafting attack), expected (the
    expected time ratio, steps + 1), devices (whether both trained on the same device) and below (a warning when
    the measured ratio is far below the expected one), in words."""
    cost, steps = training_costs(runs), study.input_hook(runs["adv"].config).attack.num_steps
    trained_on = [run.metrics["provenance"]["device"] for run in (runs["plain"], runs["adv"])]
    return dict(prose.prefixed(cost), steps=steps, expected=steps + 1, devices=prose.devices_compared(*trained_on),
                below=prose.below_expected(cost["ratio"]["epoch"], steps + 1))

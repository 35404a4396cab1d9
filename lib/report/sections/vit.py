"""Section 3, the Vision Transformer (notebooks/02_vit.ipynb): the windowed against the all-global ViT (accuracy,
measured costs, costs as the token grid grows) and the windowed ViT against SimpleNet; their tables and the facts
of the section's sentences.

`runs` and `acc` are {'window': ..., 'global': ...} of Runs and prose.accuracy_facts; `settings` is
analysis.vit_settings of the windowed run's configuration. `versus` and `versus_acc` are {'cnn': ..., 'vit': ...}
of SimpleNet's and the windowed ViT's Runs and accuracy facts.
"""
from lib.report import findings, prose, stats, tables
from lib.training import step_costs


LABELS = {"window": "ViT, window attention", "global": "ViT, global attention"}
# The cost columns: {name: (field of measurements.vit_costs, scale, column)}.
COST_COLUMNS = dict(attention=("attention_flops", 1e-6, "attention MFLOPs / image"),
                    forward=("forward_flops", 1e-6, "forward MFLOPs / image"),
                    ms=("seconds_per_step", 1e3, "ms / step"), rate=("images_per_s", 1, "images / s"),
                    mib=("peak_memory_mb", 1, "peak memory (MiB)"))
# The rows of the ViT against SimpleNet: {name: row label}.
VERSUS_ROWS = dict(epochs="epochs", optimizer="optimizer", lr="peak lr", first="val top-1 after epoch 1 (%) [95% CI]",
                   top1="val top-1 (%) [95% CI]", gap="train - val top-1 (points)", params="parameters (M)",
                   flops="forward MFLOPs / image", ms="ms / step (measured here)", mib="peak memory (MiB)",
                   rate="train images / s (logged)")


def settings_facts(run, settings, profile, n):
    """Facts of the windowed run's model and training: its configuration, `settings`, windowed (the windowed
    blocks as '0, 2'), rows and cols (the token grid), profile, n (validation images), data and hardware
    (prose.provenance_facts) and differences (from the reference's settings, in words)."""
    return {**run.config, **settings, "windowed": ", ".join(map(str, settings["windowed"])),
            "rows": settings["grid"][0], "cols": settings["grid"][1], "profile": profile, **prose.provenance_facts(run),
            "n": n, "differences": prose.differences(settings, findings.REFERENCE_VIT)}


def accuracy_table(runs, acc):
    """Table 3.1: one row per ViT (epochs, final validation top-1 / top-5 and train top-1 in % with 95% intervals,
    best validation top-1 over the epochs in %, training time in s)."""
    n = acc["window"]["n"]
    train_n = " or ".join(sorted({f"{facts['train_images']:,}" for facts in acc.values()}))
    rows = [{"model": LABELS[key], "epochs": acc[key]["epochs"], "val top-1 (%)\n[95% CI]": acc[key]["top1_cell"],
             "val top-5 (%)\n[95% CI]": acc[key]["top5_cell"], "best val\ntop-1 (%)": run.metrics["best_val_acc1"],
             "train top-1 (%)\n[95% CI]": acc[key]["train_cell"],
             "train\ntime (s)": run.metrics["provenance"]["train_time_s"]} for key, run in runs.items()]
    return tables.Table(rows, f"Accuracy of both ViTs after the last epoch on the n = {n:,} validation images, the "
                        "best validation top-1 over the epochs, the final train top-1 (the last epoch's augmented "
                        f"batches, n = {train_n} images) and the training time.", "3.1", digits=1)


def accuracy_comparison_facts(acc, settings, seed_pairs):
    """Facts of the windowed (window_*) against the all-global ViT (global_*): accuracy facts, chance (top-1 of a
    guess, %) and comparison (their paired comparisons over the seeds, `seed_pairs`, in words)."""
    return dict(prose.prefixed(acc), chance=100 / settings["num_classes"],
                comparison=findings.describe_seeds(seed_pairs, "window", "global"))


def seeds_table(correct):
    """Table 3.4: one row per ViT (stats.seeds_row over `correct`, its per-image correctness of every seed)."""
    return tables.Table([stats.seeds_row(label, correct[key]) for key, label in LABELS.items()],
                        "Validation top-1 of every training seed of both ViTs (each with its 95% Wilson interval over "
                        "the same images), and the mean over the seeds with their standard deviation and range. Table "
                        "3.1 and the costs below are the first seed's.", "3.4")


def cost_summary(costs):
    """The costs of measurements.vit_costs in the report's units, {'window', 'global', 'ratio' (window / global)}
    each {name of COST_COLUMNS: value}: attention and forward MFLOPs per image, ms per step, images per s, MiB."""
    cost = {key: {name: scale * costs[key][field] for name, (field, scale, _) in COST_COLUMNS.items()}
            for key in LABELS}
    cost["ratio"] = {name: cost["window"][name] / cost["global"][name] for name in COST_COLUMNS}
    return cost


def cost_table(costs):
    """Table 3.2 (transposed): one row per cost of COST_COLUMNS, one column each for the windowed and the all-global
    ViT and their ratio."""
    cost = cost_summary(costs)
    rows = [{"model": label, **{COST_COLUMNS[name][2]: value for name, value in cost[key].items()}}
            for key, label in {**LABELS, "ratio": "window / global"}.items()]
    return tables.Table(rows, f"Cost of the windowed and the all-global ViT and their ratio (batch {costs['batch']} "
                        f"at {costs['image_size']} px, {costs['device_name']}, {prose.precision(costs['precision'])}; "
                        f"medians of {costs['rounds']} rounds of {costs['repeats']} steps).", "3.2", digits=2,
                        transpose=True)


def cost_facts(costs, settings):
    """Facts of what window attention saves: the cost_summary as window_*, global_* and ratio_* (e.g. ratio_mib),
    rows and cols (the token grid), share (attention's part of the all-global forward FLOPs, a fraction), times (the
    step-time ratio over the rounds) with time_word, and memory_word (the peak-memory ratio), in words."""
    cost, times = cost_summary(costs), step_costs.round_ratios(costs["window"], costs["global"])
    return dict(prose.prefixed(cost), rows=settings["grid"][0], cols=settings["grid"][1],
                share=cost["global"]["attention"] / cost["global"]["forward"], times=findings.ratio_phrase(times),
                time_word=findings.time_word(times), memory_word=findings.ratio_word(cost["ratio"]["mib"]))


def scaling_facts(sweep, costs, settings):
    """Facts of measurements.vit_scaling's largest token grid: tokens, time and memory (window / global step time
    and peak memory), device; and at the trained grid: trained (tokens), trained_time and trained_memory."""
    most = max(row["tokens"] for row in sweep["rows"])
    largest = {row["model"]: row for row in sweep["rows"] if row["tokens"] == most}
    ratio = cost_summary(costs)["ratio"]
    return dict(tokens=largest["window"]["tokens"], trained=settings["tokens"], device=sweep["device_name"],
                time=largest["window"]["seconds_per_step"] / largest["global"]["seconds_per_step"],
                memory=largest["window"]["peak_memory_mb"] / largest["global"]["peak_memory_mb"],
                trained_time=ratio["ms"], trained_memory=ratio["mib"])


def versus_sides(versus, versus_acc, costs):
    """{'cnn': ..., 'vit': ...} each {name of VERSUS_ROWS: value}: epochs, optimizer, peak lr, validation top-1
    after epoch 1 and at the end (table cells), gap (points), parameters (M), forward MFLOPs per image, ms per
    measured step, peak MiB (measurements.cnn_vs_vit `costs`) and the images per s logged in training."""
    return {key: dict(epochs=versus_acc[key]["epochs"], optimizer=run.config["optimizer"], lr=run.config["lr"],
                      first=versus_acc[key]["first_cell"], top1=versus_acc[key]["top1_cell"],
                      gap=versus_acc[key]["gap"], params=costs[key]["parameters"] / 1e6,
                      flops=costs[key]["forward_flops"] / 1e6, ms=1e3 * costs[key]["seconds_per_step"],
                      mib=costs[key]["peak_memory_mb"], rate=run.metrics["provenance"]["images_per_s"])
            for key, run in versus.items()}


def versus_names(versus):
    """The column names of SimpleNet and the windowed ViT: {'cnn': its run's title, 'vit': LABELS['window']}."""
    return {"cnn": versus["cnn"].config["title"], "vit": LABELS["window"]}


def versus_table(versus, versus_acc, costs):
    """Table 3.3 (transposed): one row per entry of VERSUS_ROWS, one column each for SimpleNet and the windowed ViT."""
    names = versus_names(versus)
    rows = [{"": names[key], **{VERSUS_ROWS[field]: value for field, value in side.items()}}
            for key, side in versus_sides(versus, versus_acc, costs).items()]
    return tables.Table(rows, "SimpleNet against the windowed ViT: validation accuracy (n = "
                        f"{versus_acc['vit']['n']:,}) after the first epoch and at the end, the train/validation gap, "
                        "parameters, forward FLOPs, a training step measured side by side (same batch, each with its "
                        f"own optimizer, {prose.precision(costs['precision'])}) and the training throughput logged "
                        "during the runs.",
                        "3.3", digits=2, transpose=True)


def versus_facts(versus, versus_acc, costs):
    """Facts of SimpleNet (cnn_*) against the windowed ViT (vit_*): versus_sides, cnn_first and vit_first (top-1
    after one epoch in a sentence), prose.convergence's epochs and ahead, final (their paired comparison in words), flops_ratio (ViT / SimpleNet) and device."""
    side = versus_sides(versus, versus_acc, costs)
    final = stats.paired_difference(versus_acc["cnn"]["correct"], versus_acc["vit"]["correct"])
    return dict(prose.prefixed(side), cnn_first=versus_acc["cnn"]["first"], vit_first=versus_acc["vit"]["first"],
                **prose.convergence(versus["cnn"].history["val_acc1"], versus["vit"].history["val_acc1"]),
                final=stats.describe_pair(final, "SimpleNet", "ViT"),
                flops_ratio=side["vit"]["flops"] / side["cnn"]["flops"], device=costs["device_name"])

"""Section 2, convolution (notebooks/01_convolution.ipynb): SimpleNet with nn.Conv2d and with the custom
convolution, ImprovedNet and ResNet-18; their accuracy tables, paired comparisons, step costs and the facts of the
section's sentences.

`runs` and `acc` are {experiment: Run} and {experiment: prose.accuracy_facts} over NAMES; `correct` is
{experiment: prose.seeds_correct}, per-image top-1 correctness of every training seed.
"""
from lib.report import findings, measurements, prose, stats, tables
from lib.training import step_costs


NAMES = ("simplenet", "simplenet_custom", "improvednet", "resnet18")
SHORT = {"simplenet": "SimpleNet", "simplenet_custom": "SimpleNet (custom)", "improvednet": "ImprovedNet",
         "resnet18": "ResNet-18"}
COMPARED = (("simplenet", "simplenet_custom"), ("improvednet", "simplenet"), ("resnet18", "improvednet"))


def accuracy_table(runs, acc, n):
    """Table 2.1: one row per experiment of `runs` (title, epochs, validation top-1 / top-5 and final train top-1
    in % with 95% intervals, the reference's epochs, top-1 and top-5); n: the validation images of each."""
    train_n = " or ".join(sorted({f"{acc[name]['train_images']:,}" for name in runs}))
    rows = [{"experiment": run.config["title"], "epochs": acc[name]["epochs"],
             "val top-1 (%)\n[95% CI]": acc[name]["top1_cell"], "val top-5 (%)\n[95% CI]": acc[name]["top5_cell"],
             "train top-1 (%)\n[95% CI]": acc[name]["train_cell"], **findings.reference_cells(name)}
            for name, run in runs.items()]
    return tables.Table(rows, f"Final validation accuracy (n = {n:,} images each) and final train top-1 (the last "
                        f"epoch's augmented batches, n = {train_n} images) of the convolution experiments; the "
                        "reference columns are the original report's (full data set, 128 px, GPU).", "2.1", digits=1)


def paired_comparisons(correct):
    """{(a, b): [stats.paired_difference of a vs b, one per training seed both have]} for the pairs of COMPARED."""
    return {(a, b): stats.paired_by_seed(correct[a], correct[b]) for a, b in COMPARED}


def comparison_table(comparisons):
    """Table 2.2: one row per pair of `paired_comparisons`, the first seed's paired comparison."""
    return tables.Table([stats.comparison_row(pairs[0], SHORT[a], SHORT[b]) for (a, b), pairs in comparisons.items()],
                        "Paired comparisons of top-1 correctness on the same validation images: the difference of "
                        "the two accuracies with its 95% interval (Newcombe), the images only one of the two gets "
                        "right, and the exact McNemar p value (a difference is called one when p < 0.05).", "2.2")


def seeds_table(runs, correct):
    """Table 2.4: one row per experiment trained with several seeds (stats.seeds_row: each seed's validation top-1
    and their mean, sd and range)."""
    return tables.Table([stats.seeds_row(run.config["title"], correct[name]) for name, run in runs.items()
                         if len(correct[name]) > 1],
                        f"Validation top-1 of every training seed of the compared CNNs (seed "
                        f"{runs['simplenet'].config['seed']} and the next ones, each with its 95% Wilson interval over "
                        "the same images), and the mean over the seeds with their standard deviation and range. "
                        "Tables 2.1 and 2.2 show the first seed.", "2.4")


def custom_facts(acc, comparisons):
    """Facts of SimpleNet with nn.Conv2d (native_*) and with the custom convolution (custom_*): accuracy facts, and
    comparison, their first seeds' paired comparison in words."""
    pair = comparisons[("simplenet", "simplenet_custom")][0]
    return dict(prose.prefixed({"native": acc["simplenet"], "custom": acc["simplenet_custom"]}),
                comparison=stats.describe_pair(pair, "nn.Conv2d", "custom"))


def epoch_times(runs, acc):
    """Mean seconds per training epoch logged by the native and the custom SimpleNet run: {'native', 'custom'}."""
    return {key: runs[name].metrics["provenance"]["train_time_s"] / acc[name]["epochs"]
            for key, name in (("native", "simplenet"), ("custom", "simplenet_custom"))}


def cost_table(costs, runs, acc):
    """Table 2.3: per convolution (nn.Conv2d, custom) the measured training step of measurements.conv_costs (s per
    step, images per s, peak memory in MiB) and the mean epoch time in training (s)."""
    epoch = epoch_times(runs, acc)
    rows = [{"convolution": label, "s / step": costs[key]["seconds_per_step"], "images / s": costs[key]["images_per_s"],
             "peak memory (MiB)": costs[key]["peak_memory_mb"], "s / epoch in training": epoch[key]}
            for label, key in (("nn.Conv2d", "native"), ("custom", "custom"))]
    return tables.Table(rows, f"One SimpleNet training step, batch {costs['batch']} at {costs['image_size']} px on "
                        f"{costs['device_name']} in {prose.precision(costs['precision'])} (medians of "
                        f"{costs['rounds']} rounds of {costs['repeats']} steps), and the mean epoch time logged by the "
                        "training runs.", "2.3",
                        digits={"s / step": 3, "images / s": 0, "peak memory (MiB)": 1, "s / epoch in training": 1})


def cost_facts(costs, runs, acc):
    """Facts of the custom against the native convolution: time (the step-time ratio over the rounds, in words),
    memory (the peak-memory ratio), native and custom (mean s per training epoch)."""
    return dict(epoch_times(runs, acc),
                time=findings.ratio_phrase(step_costs.round_ratios(costs["custom"], costs["native"])),
                memory=costs["custom"]["peak_memory_mb"] / costs["native"]["peak_memory_mb"])


def improved_facts(runs, acc, comparisons):
    """Facts of ImprovedNet (improved_*) against SimpleNet (simple_*): accuracy facts, ImprovedNet's configuration
    (lr, weight_decay, ...) and comparison, the paired comparisons over the seeds in words."""
    pairs = comparisons[("improvednet", "simplenet")]
    return dict(prose.prefixed({"improved": acc["improvednet"], "simple": acc["simplenet"]}),
                **runs["improvednet"].config,
                comparison=findings.describe_seeds(pairs, "ImprovedNet", "SimpleNet"))


def resnet_facts(runs, acc, comparisons):
    """Facts of ResNet-18 (resnet_*) against SimpleNet (simple_*): accuracy facts, resnet_params and simple_params
    (millions), loss (ResNet-18's final train loss), start (how it was initialised), comparison (against
    ImprovedNet over the seeds), in words."""
    params = {f"{key}_params": measurements.parameters(runs[name]) / 1e6
              for key, name in (("resnet", "resnet18"), ("simple", "simplenet"))}
    return dict(prose.prefixed({"resnet": acc["resnet18"], "simple": acc["simplenet"]}), **params,
                loss=runs["resnet18"].metrics["train_loss"],
                start=prose.resnet_start(runs["resnet18"].metrics.get("pretrained_source") == "imagenet"),
                comparison=findings.describe_seeds(comparisons[("resnet18", "improvednet")], "ResNet-18",
                                                   "ImprovedNet"))

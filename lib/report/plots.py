"""Figures of the report: training curves, robustness curves, image grids, cost sweeps.

One style for every figure, set here: figures are drawn at the report's text width (WIDTH inches, shown at
about 90% of it in the PDF) with fonts of 8-9 pt, so that no text is smaller than 7 pt on the page, and at
most two panels per row. Every figure is saved to figures/<name>.png and returned for display.
"""
from pathlib import Path
import textwrap

import matplotlib
import matplotlib.pyplot as plt

from lib.study.registry import OUTPUT_ROOT


FIGURES_DIR = OUTPUT_ROOT / "figures"
WIDTH = 6.5  # inches: the PDF's text width
PANEL_HEIGHT = 2.6  # inches per row of panels
STYLE = {"figure.dpi": 100, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9,
         "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8,
         "legend.framealpha": 0.8, "lines.markersize": 4}
matplotlib.rcParams.update(STYLE)


def save(fig, name):
    """Write `fig` to figures/<name>.png and return the path."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = Path(FIGURES_DIR) / f"{name}.png"
    fig.savefig(path, bbox_inches="tight")
    return path


def panels(count, height=PANEL_HEIGHT):
    """A figure of the text width with `count` panels, two per row; unused cells are hidden. -> (fig, axes)."""
    rows = (count + 1) // 2
    cols = 1 if count == 1 else 2
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, height * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[count:]:
        ax.axis("off")
    return fig, axes


TITLE_PT = 8  # titles over small images (grids, adversarial examples)


def wrap_title(text, width_in, size_pt=TITLE_PT):
    """`text` wrapped to fit `width_in` inches at `size_pt`: class names' underscores become spaces and a line
    may break after a '/', so that long names break between words (a glyph is taken as 0.6 em wide)."""
    chars = max(8, int(width_in * 72 / (0.6 * size_pt)))
    lines = (textwrap.fill(line.replace("_", " ").replace("/", "/ "), chars) for line in text.splitlines())
    return "\n".join(lines).replace("/ ", "/")


def _title_height(titles):
    """Inches taken by the tallest of `titles` (one line at TITLE_PT plus spacing per line)."""
    return max((title.count("\n") + 1 for title in titles), default=0) * TITLE_PT * 1.3 / 72 + 0.08


def _finish(fig, name):
    fig.tight_layout()
    save(fig, name)
    return fig


def curves(runs, name):
    """Learning rate and training loss per logged step, and train (dashed) / val (solid) top-1 per epoch.

    runs: {label: lib.study.Run, or a list of them, one per training seed: every seed is drawn, in the label's
    colour, the first one marked}. Returns the figure (saved as figures/<name>.png).
    """
    fig, (ax_lr, ax_loss, ax_acc, ax_legend) = panels(4)
    for index, (label, group) in enumerate(runs.items()):
        for seed, run in enumerate(_seeds(group)):
            steps, hist = run.steps, run.history
            style = dict(color=f"C{index}", alpha=0.8 if seed == 0 else 0.45)
            ax_lr.plot(steps["step"], steps["lr"], label=_legend(seed, label), **style)
            ax_loss.plot(steps["step"], steps["loss"], label=_legend(seed, label), **style)
            ax_acc.plot(hist["epoch"], hist["val_acc1"], marker="o" if seed == 0 else ".",
                        label=_legend(seed, _seeds_label(label, group) + ", val"), **style)
            ax_acc.plot(hist["epoch"], hist["train_acc1"], ls="--",
                        label=_legend(seed, _seeds_label(label, group) + ", train"), **style)
    ax_lr.set(title="learning rate", xlabel="optimizer step")
    ax_loss.set(title="training loss", xlabel="optimizer step")
    ax_acc.set(title="top-1 accuracy (%)", xlabel="epoch")
    ax_acc.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax_legend.legend(*ax_acc.get_legend_handles_labels(), loc="center", frameon=False)
    ax_legend.axis("off")
    return _finish(fig, name)


def _legend(seed, text):
    """A line's legend label: `text` for the first seed's line, none for the others (one entry per model)."""
    return text if seed == 0 else None


def _seeds(group):
    """The runs of a curve entry: a list of runs (one per seed) or a single run."""
    return list(group) if isinstance(group, (list, tuple)) else [group]


def _seeds_label(label, group):
    """'SimpleNet', or 'SimpleNet (3 seeds)' for several."""
    count = len(_seeds(group))
    return label if count == 1 else f"{label} ({count} seeds)"


def image_grid(images, titles, name, ncols=6):
    """Images (N, 3, H, W) in [0, 1] in a grid of the text width with a title over each (wrapped to its
    column). Returns the figure."""
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    side = WIDTH / ncols
    titles = [wrap_title(title, side) for title in titles]
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, nrows * (side + _title_height(titles))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        ax.set_title(title, fontsize=TITLE_PT)
    return _finish(fig, name)


def class_counts(train_counts, val_counts, name):
    """Stacked bar chart of training and validation images per class id. Returns the figure."""
    fig, (ax,) = panels(1, height=2.2)
    ax.bar(range(len(train_counts)), train_counts, label="train")
    ax.bar(range(len(val_counts)), val_counts, bottom=train_counts, label="val")
    ax.set(xlabel="class id", ylabel="images", title="images per class")
    ax.legend()
    return _finish(fig, name)


def adversarial_examples(images, adversarial, captions, name, epsilon):
    """Originals, adversarial samples and their amplified difference, one column per image.

    images, adversarial: (N, 3, H, W) in [0, 1]; captions: N pairs (caption over the original, caption over
    the adversarial sample). The difference is shown as 0.5 + (adv - x) / (2 epsilon), so mid-grey is no
    change and black/white a change of -/+ epsilon in that channel. Returns the figure.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0 to scale the difference, got {epsilon!r}")
    difference = 0.5 + (adversarial - images) / (2 * epsilon)
    rows = [("original", images), ("adversarial", adversarial), (f"difference x{1 / (2 * epsilon):.0f}", difference)]
    n = len(images)
    side = WIDTH / n
    captions = [[wrap_title(text, side) for text in pair] for pair in captions]
    heights = [side + _title_height([pair[r] for pair in captions]) for r in range(2)] + [side]
    fig, axes = plt.subplots(3, n, figsize=(WIDTH, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for r, (label, batch) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(batch[c].transpose(1, 2, 0).clip(0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r < 2:
                ax.set_title(captions[c][r], fontsize=TITLE_PT)
        axes[r, 0].set_ylabel(label)
    return _finish(fig, name)


def robustness_curves(curves, name):
    """Top-1 (solid) / top-5 (dashed) accuracy and attack success rate against epsilon, one colour per model.

    curves: {label: rows of lib.report.analysis.robustness_curve} (each row has epsilon in [0, 1] pixel units,
    clean/adv accuracies and success_rate in percent). Epsilon 0 is the clean accuracy. Returns the figure.
    """
    fig, (ax_acc, ax_success) = panels(2)
    for label, rows in curves.items():
        eps = [0.0] + [255 * row["epsilon"] for row in rows]
        line, = ax_acc.plot(eps, [rows[0]["clean_acc1"]] + [row["adv_acc1"] for row in rows], marker="o",
                            label=f"{label} top-1")
        ax_acc.plot(eps, [rows[0]["clean_acc5"]] + [row["adv_acc5"] for row in rows], marker="s", ls="--",
                    color=line.get_color(), label=f"{label} top-5")
        ax_success.plot(eps[1:], [row["success_rate"] for row in rows], marker="o", label=label)
    ax_acc.set(title="accuracy under attack (%)", xlabel="epsilon (/255)", ylim=(0, None))
    ax_success.set(title="attack success rate (%)", xlabel="epsilon (/255)", ylim=(-2, 102))
    ax_acc.legend()
    ax_success.legend()
    return _finish(fig, name)


def steps_vs_epsilon(grid, clean_acc1, name):
    """Top-1 under attack and targeted success rate over the number of PGD steps, one line per epsilon.

    grid: rows of lib.report.analysis.steps_grid (steps, scale, epsilon in pixel units, adv_acc1, success_rate);
    clean_acc1: the accuracy without attack (a dotted line). Returns the figure.
    """
    fig, (ax_acc, ax_success) = panels(2, height=3.0)
    steps = sorted({row["steps"] for row in grid})
    for scale in sorted({row["scale"] for row in grid}):
        rows = sorted((row for row in grid if row["scale"] == scale), key=lambda row: row["steps"])
        label = f"{255 * rows[0]['epsilon']:.2f}/255 ({scale:g}x)"
        ax_acc.plot([r["steps"] for r in rows], [r["adv_acc1"] for r in rows], marker="o", label=label)
        ax_success.plot([r["steps"] for r in rows], [r["success_rate"] for r in rows], marker="o", label=label)
    ax_acc.axhline(clean_acc1, color="grey", ls=":", label="without attack")
    ax_acc.set(title="top-1 under attack (%)", xlabel="PGD steps", xscale="log", ylim=(0, None))
    ax_success.set(title="targeted success rate (%)", xlabel="PGD steps", xscale="log", ylim=(-2, 102))
    for ax in (ax_acc, ax_success):
        ax.minorticks_off()
        ax.set_xticks(steps, [str(k) for k in steps])
    ax_success.legend(title="epsilon", fontsize=7.5, title_fontsize=8)
    ax_acc.legend(*[x[-1:] for x in ax_acc.get_legend_handles_labels()], loc="upper right")
    return _finish(fig, name)


def adversarial_training_curves(plain, adv, name):
    """Training loss per logged step of SimpleNet and AdvSimpleNet, and their top-1 per epoch (AdvSimpleNet on
    its adversarial training batches, on the same batches clean, and on the clean validation set).

    plain, adv: lib.study.Run of SimpleNet and AdvSimpleNet, or lists of them, one per training seed (every seed
    is drawn, the first one marked). Returns the figure.
    """
    fig, (ax_loss, ax_acc) = panels(2, height=3.2)
    for color, label, group in (("C0", "SimpleNet", plain), ("C1", "AdvSimpleNet", adv)):
        for seed, run in enumerate(_seeds(group)):
            ax_loss.plot(run.steps["step"], run.steps["loss"], color=color, alpha=0.8 if seed == 0 else 0.45,
                         label=_legend(seed, _seeds_label(label, group)))
    for seed, (a, p) in enumerate(zip((run.history for run in _seeds(adv)), (run.history for run in _seeds(plain)))):
        style = dict(alpha=0.9 if seed == 0 else 0.45)
        ax_acc.plot(a["epoch"], a["train_acc1"], marker="o", ls="--", color="C1",
                    label=_legend(seed, "Adv train (adversarial)"), **style)
        ax_acc.plot(a["epoch"], a["train_clean_acc1"], marker="^", ls=":", color="C1",
                    label=_legend(seed, "Adv train (clean)"), **style)
        ax_acc.plot(a["epoch"], a["val_acc1"], marker="o", color="C1", label=_legend(seed, "Adv val (clean)"), **style)
        ax_acc.plot(p["epoch"], p["train_acc1"], marker="o", ls="--", color="C0",
                    label=_legend(seed, "SimpleNet train"), **style)
        ax_acc.plot(p["epoch"], p["val_acc1"], marker="o", color="C0", label=_legend(seed, "SimpleNet val"), **style)
    ax_loss.set(title="training loss", xlabel="optimizer step")
    ax_acc.set(title="top-1 accuracy (%)", xlabel="epoch", ylim=(0, None))
    ax_acc.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax_loss.legend()
    ax_acc.legend(fontsize=7)
    return _finish(fig, name)


def vit_scaling(rows, labels, name):
    """Time per training step, peak memory of a step and attention MFLOPs per image against tokens per image.

    rows: lib.report.measurements.vit_scaling's rows; labels: {model key: legend label}. Returns the figure.
    """
    fig, axes = panels(3)
    series = (("seconds_per_step", 1e3, "time per training step (ms)"),
              ("peak_memory_mb", 1, "peak memory of a step (MiB)"),
              ("attention_flops", 1e-6, "attention MFLOPs per image"))
    for ax, (key, scale, title) in zip(axes, series):
        for model, label in labels.items():
            points = [row for row in rows if row["model"] == model]
            ax.plot([r["tokens"] for r in points], [scale * r[key] for r in points], marker="o", label=label)
        ax.set(title=title, xlabel="tokens per image")
    axes[3].legend(*axes[0].get_legend_handles_labels(), loc="center", frameon=False)
    return _finish(fig, name)


OUTCOME_COLOURS = {"supported": "tab:green", "contradicted": "tab:red", "inconclusive": "tab:grey"}
FOREST_ROW = 0.32  # inches per row of the findings figure


def claims_forest(rows, name):
    """The findings at a glance: one row per measured part of a claim, each on its own axis in its own unit: the
    estimate with its 95% interval (a point alone for a single measurement), coloured by the claim's outcome, and
    the claim's threshold(s) as dashed lines.

    rows: lib.report.sections.summary.forest_rows (label, estimate, low, high, thresholds, outcome). Returns the
    figure.
    """
    fig, axes = plt.subplots(len(rows), 1, figsize=(WIDTH, FOREST_ROW * len(rows) + 0.6), squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        colour = OUTCOME_COLOURS[row["outcome"]]
        ax.errorbar([row["estimate"]], [0], xerr=[[row["estimate"] - row["low"]], [row["high"] - row["estimate"]]],
                    fmt="o", color=colour, capsize=2)
        for threshold in row["thresholds"]:
            ax.axvline(threshold, color="black", ls="--", lw=0.8)
        ends = [row["low"], row["high"], *row["thresholds"]]
        pad = 0.15 * (max(ends) - min(ends)) or 0.5
        ax.set_xlim(min(ends) - pad, max(ends) + pad)
        ax.set_yticks([0], [row["label"]], fontsize=7)
        ax.tick_params(axis="x", labelsize=7, pad=1)
        ax.grid(False)
    handles = [plt.Line2D([], [], marker="o", color=c, ls="", label=o) for o, c in OUTCOME_COLOURS.items()]
    handles.append(plt.Line2D([], [], color="black", ls="--", lw=0.8, label="threshold"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()), h_pad=0.2)
    save(fig, name)
    return fig

"""Figures and tables of the report: training curves, results tables, image grids.

Every figure is saved to figures/<notebook>_<name>.png and returned for display.
"""
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lib.experiments import OUTPUT_ROOT

FIGURES_DIR = OUTPUT_ROOT / "figures"
matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "axes.grid": True, "grid.alpha": 0.3})


def save(fig, name):
    """Write `fig` to figures/<name>.png and return the path."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = Path(FIGURES_DIR) / f"{name}.png"
    fig.savefig(path, bbox_inches="tight")
    return path


def say(text):
    """Show Markdown prose built from computed values (f-strings in the notebooks)."""
    display(Markdown(text))


def curves(runs, name):
    """Learning rate and training loss per logged step, and train/val Acc@1 per epoch.

    runs: {label: lib.experiments.Run}. Returns the figure (saved as figures/<name>.png).
    """
    fig, (ax_lr, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(14, 3.6))
    for label, run in runs.items():
        steps, hist = run.steps, run.history
        ax_lr.plot(steps["step"], steps["lr"], label=label)
        ax_loss.plot(steps["step"], steps["loss"], label=label, alpha=0.8)
        line, = ax_acc.plot(hist["epoch"], hist["val_acc1"], marker="o", label=f"{label} val")
        ax_acc.plot(hist["epoch"], hist["train_acc1"], ls="--", color=line.get_color(), label=f"{label} train")
    ax_lr.set(title="learning rate", xlabel="optimizer step")
    ax_loss.set(title="training loss", xlabel="optimizer step")
    ax_acc.set(title="top-1 accuracy (%)", xlabel="epoch")
    ax_acc.legend(fontsize=7)
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    save(fig, name)
    return fig


def image_grid(images, titles, name, ncols=6, scale=1.8):
    """Images (N, 3, H, W) in [0, 1] in a grid with a title under each. Returns the figure."""
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    save(fig, name)
    return fig


def table(rows, columns=None, digits=2):
    """A DataFrame of result rows (list of dicts), numbers rounded for display."""
    frame = pd.DataFrame(rows, columns=columns)
    return frame.round(digits)


def adversarial_examples(images, adversarial, captions, name, epsilon, scale=1.9):
    """Originals, adversarial samples and their amplified difference, one column per image.

    images, adversarial: (N, 3, H, W) in [0, 1]; captions: N pairs (caption under the original,
    caption under the adversarial sample). The difference is shown as 0.5 + (adv - x) / (2 epsilon),
    so mid-grey is no change and black/white a change of -/+ epsilon in that channel.
    Returns the figure (saved as figures/<name>.png).
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0 to scale the difference, got {epsilon!r}")
    difference = 0.5 + (adversarial - images) / (2 * epsilon)
    rows = [("original", images), ("adversarial", adversarial),
            (f"difference x{1 / (2 * epsilon):.0f}", difference)]
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(n * scale, 3 * scale * 1.3), squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(batch[c].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r < 2:
                ax.set_title(captions[c][r], fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    save(fig, name)
    return fig


def robustness_curves(curves, name):
    """Top-1 / top-5 accuracy and attack success rate against epsilon, one line per model.

    curves: {label: rows of lib.attacks.robustness_curve} (each row has epsilon in [0, 1] pixel
    units, clean/adv accuracies and success_rate in percent). Epsilon 0 is the clean accuracy.
    Returns the figure (saved as figures/<name>.png).
    """
    fig, (ax_acc, ax_success) = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, rows in curves.items():
        eps = [0.0] + [255 * row["epsilon"] for row in rows]
        line, = ax_acc.plot(eps, [rows[0]["clean_acc1"]] + [row["adv_acc1"] for row in rows], marker="o",
                            label=f"{label} top-1")
        ax_acc.plot(eps, [rows[0]["clean_acc5"]] + [row["adv_acc5"] for row in rows], marker="s", ls="--",
                    color=line.get_color(), label=f"{label} top-5")
        ax_success.plot(eps[1:], [row["success_rate"] for row in rows], marker="o", label=label)
    ax_acc.set(title="accuracy under attack (%)", xlabel="epsilon (/255)", ylim=(0, None))
    ax_success.set(title="attack success rate (%)", xlabel="epsilon (/255)", ylim=(-2, 102))
    ax_acc.legend(fontsize=7)
    ax_success.legend(fontsize=7)
    fig.tight_layout()
    save(fig, name)
    return fig

"""Figure helpers: titles over small images fit their column."""
import numpy as np
import pytest

pytest.importorskip("IPython", reason="the report's figures display through the Jupyter stack")

from lib import data  # noqa: E402 (after the skip)
from lib.report import plots  # noqa: E402 (after the skip)


def test_titles_wrap_between_words_and_after_slashes_to_fit_their_column():
    assert plots.wrap_title("pred: monastery/outdoor", 1.08) == "pred: monastery/\noutdoor"
    assert plots.wrap_title("true: ice_skating_rink/outdoor\npred: bridge", 1.08) == \
        "true: ice\nskating rink/\noutdoor\npred: bridge"
    limit = int(1.08 * 72 / (0.6 * plots.TITLE_PT))
    for name in data.read_categories(data.SAMPLE_ROOT):
        for line in plots.wrap_title(f"target: {name.strip('/')[2:]}", 1.08).splitlines():
            assert len(line) <= limit, line


def test_adversarial_examples_leave_room_for_their_wrapped_captions(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "FIGURES_DIR", tmp_path)
    images = np.full((6, 3, 16, 16), 0.5, dtype=np.float32)
    captions = [("true: kindergarden_classroom\npred: subway_station/platform", "pred: ice_skating_rink/outdoor\n"
                 "target: swimming_pool/outdoor")] * 6
    fig = plots.adversarial_examples(images, images, captions, "examples", epsilon=8 / 255)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    for row in (boxes[:6], boxes[6:]):
        for left, right in zip(row, row[1:]):
            assert left.x1 <= right.x0, "neighbouring captions overlap"
    assert (tmp_path / "examples.png").exists()


class FakeRun:
    """What the curves read of a run: its step log and per-epoch history."""

    def __init__(self, shift):
        import pandas as pd
        self.steps = pd.DataFrame({"step": [1, 2, 3], "lr": [0.1, 0.05, 0.0], "loss": [4.6 - shift, 4.0, 3.5]})
        self.history = pd.DataFrame({"epoch": [1, 2], "val_acc1": [5 + shift, 9], "train_acc1": [4, 8 + shift],
                                     "train_clean_acc1": [6, 10]})


def test_curves_draw_every_seed_with_one_legend_entry_per_model(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "FIGURES_DIR", tmp_path)
    fig = plots.curves({"SimpleNet": [FakeRun(0), FakeRun(1), FakeRun(2)], "ImprovedNet": FakeRun(3)}, "seeds")
    ax_lr, ax_loss, ax_acc = fig.axes[:3]
    assert len(ax_loss.lines) == 4 and len(ax_acc.lines) == 8  # 3 seeds + 1 run; val and train each
    labels = [line.get_label() for line in ax_acc.lines if not line.get_label().startswith("_")]
    assert labels == ["SimpleNet (3 seeds), val", "SimpleNet (3 seeds), train", "ImprovedNet, val",
                      "ImprovedNet, train"]
    assert {line.get_color() for line in ax_loss.lines[:3]} == {"C0"} and ax_loss.lines[3].get_color() == "C1"
    fig = plots.adversarial_training_curves([FakeRun(0), FakeRun(1)], [FakeRun(2), FakeRun(3)], "adv_seeds")
    assert len(fig.axes[0].lines) == 4 and len(fig.axes[1].lines) == 10
    assert (tmp_path / "seeds.png").exists() and (tmp_path / "adv_seeds.png").exists()


def test_claims_forest_draws_one_axis_per_part_with_its_thresholds(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "FIGURES_DIR", tmp_path)
    rows = [dict(label="2. step time", estimate=1.5, low=1.4, high=1.6, thresholds=[1.05], outcome="supported"),
            dict(label="8. top-1", estimate=0.3, low=-1.2, high=1.8, thresholds=[-1, 1], outcome="inconclusive"),
            dict(label="15. time", estimate=5.0, low=5.0, high=5.0, thresholds=[1.05], outcome="contradicted")]
    fig = plots.claims_forest(rows, "claims")
    assert (tmp_path / "claims.png").exists() and len(fig.axes) == 3
    for ax, row in zip(fig.axes, rows):
        low, high = ax.get_xlim()
        assert low < min(row["low"], *row["thresholds"]) and high > max(row["high"], *row["thresholds"])
        assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == row["thresholds"]

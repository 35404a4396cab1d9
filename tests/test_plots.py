"""Figure helpers: titles over small images fit their column."""
import numpy as np

from lib import data
from lib.report import plots


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

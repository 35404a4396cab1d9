"""lib/data/layout.py: the list files and the category file, checked line by line."""
import pytest

from lib import data
from tests.conftest import sample_lines, write_lines


@pytest.mark.parametrize("bad, message", [
    ("train/a/abbey/00000001.jpg", "expected"),
    ("train/a/abbey/00000001.jpg zero", "not an integer"),
    ("train/a/abbey/00000001.jpg 100", "not in 0..99"),
    ("train/a/abbey/00000001.jpg -1", "not in 0..99"),
    ("../../secret.jpg 1", "inside"),
])
def test_read_list_names_file_and_line(tiny, bad, message):
    lines = sample_lines("train", 2)
    write_lines(tiny / "train.txt", lines[:2] + [bad] + lines[2:])
    with pytest.raises(data.DataError, match=rf"train\.txt:3: .*{message}"):
        data.read_list(tiny, "train")


def test_read_categories_rejects_malformed_and_duplicate_ids(tiny):
    write_lines(tiny / "categories.txt", ["/a/abbey 0", "/a/airport_terminal"])
    with pytest.raises(data.DataError, match=r"categories\.txt:2: "):
        data.read_categories(tiny)
    write_lines(tiny / "categories.txt", ["/a/abbey 0", "/b/bar 0"])
    with pytest.raises(data.DataError, match=r"categories\.txt:1: .*more than once"):
        data.read_categories(tiny)

"""lib/report/completeness.py: each figure caption is followed by its image."""
import pytest

nbformat = pytest.importorskip("nbformat", reason="the report needs the Jupyter stack")
pytest.importorskip("papermill", reason="the report needs the Jupyter stack")

from lib.report import completeness  # noqa: E402 (after the skips)


@pytest.mark.parametrize("outputs, problems", [
    ([nbformat.v4.new_output("display_data", data={"image/png": "..."})], []),
    ([], ["Figure 1.1 has no image"]),
    ([nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])],
     ["cell 2: ValueError: boom", "Figure 1.1 has no image"]),
])
def test_completeness_pairs_each_caption_with_the_next_image(outputs, problems):
    caption = nbformat.v4.new_markdown_cell("Some prose.\n\n**Figure 1.1**: a caption.")
    code = nbformat.v4.new_code_cell("plot()", execution_count=2)
    code.outputs = outputs
    heading = nbformat.v4.new_markdown_cell("## Next part")
    nb = nbformat.v4.new_notebook(cells=[caption, code, heading])
    assert completeness.missing(nb) == problems

"""The report as a document: Findings first, appendix last, unnumbered sections, typeset tables, no noise.

The end-to-end check renders the smoke report as HTML only (no LaTeX run) and reads its text.
"""
import base64
import html
import re

import pytest

nbformat = pytest.importorskip("nbformat", reason="the report needs the Jupyter stack")
pytest.importorskip("papermill", reason="the report needs the Jupyter stack")

from lib.report import build as report  # noqa: E402 (after the skips)
from lib.report.tables import Table  # noqa: E402 (after the skips)


PNG_1x1 = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
                           "RU5ErkJggg==")


def notebook(path, cells, front=False):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    if front:
        nb.metadata["report"] = {"placement": "front"}
    nbformat.write(nb, path)
    return path


def tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def test_combine_places_findings_first_appendix_last_and_drops_logs(tmp_path):
    log = nbformat.v4.new_code_cell("print('x')")
    log.outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept the previous run of /tmp/x\n"),
                   nbformat.v4.new_output("display_data", data={"text/markdown": "prose"})]
    part = notebook(tmp_path / "01_part.ipynb", [nbformat.v4.new_markdown_cell("# Part one\n\ntext"), log])
    findings = notebook(tmp_path / "05_findings.ipynb", [
        tagged(nbformat.v4.new_markdown_cell("# Findings\n\nsummary"), "unnumbered"),
        tagged(nbformat.v4.new_code_cell("profile = 'x'"), "parameters"),
        tagged(nbformat.v4.new_markdown_cell("# Appendix: provenance"), "unnumbered", "appendix")], front=True)
    combined = report.combine([part, findings], "Title")
    title, *cells = combined.cells
    assert title.source == "# Title" and title.metadata["tags"] == [report.HTML_ONLY]  # the HTML opens with it
    sources = [cell.source for cell in cells]
    assert cells[0].id == "contents" and "- [Findings](#Findings)" in sources[0]
    assert "- 1 [Part one](#Part-one)" in sources[0]
    assert sources[1].startswith(r"\section*{Findings}\addcontentsline{toc}{section}{Findings}")
    assert cells[1].metadata["raw_mimetype"] == "text/latex"
    assert sources[2] == "# Findings" and cells[2].metadata["tags"] == [report.HTML_ONLY]
    assert sources[3] == "summary" and sources[4].startswith("# Part one")
    assert sources[-2].startswith(r"\section*{Appendix: provenance}") and sources[-1] == "# Appendix: provenance"
    assert not any("profile = 'x'" in source for source in sources)
    assert [out.output_type for out in cells[5].outputs] == ["display_data"]


def test_table_outputs_reach_the_latex_export(tmp_path):
    cell = nbformat.v4.new_code_cell("")
    table = Table([{"a": "x", "b": None}], "caption", "1.1")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/latex": table._repr_latex_(), "text/html": table._repr_html_(), "text/plain": repr(table)})]
    combined = report.combine([notebook(tmp_path / "01_x.ipynb", [cell])], "T")
    from nbconvert import LatexExporter
    latex, _ = LatexExporter(exclude_input=True, extra_template_paths=[str(report.TEMPLATES)],
                             template_file="miniplaces.tex.j2").from_notebook_node(combined)
    assert r"\begin{tabular}{lr}" in latex and r"\toprule" in latex and r"\tableofcontents" in latex
    assert r"\captionsetup{format=plain" in latex


def test_figure_captions_are_kept_with_their_figure_in_the_latex(tmp_path):
    """A caption ending a Markdown cell or shown by a cell becomes an unbreakable block glued to the image."""
    png = base64.b64encode(PNG_1x1).decode()
    shown = nbformat.v4.new_code_cell("")
    shown.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "**Figure 1.2**: shown."}),
                     nbformat.v4.new_output("display_data", data={"image/png": png})]
    figure = nbformat.v4.new_code_cell("")
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png})]
    cells = [nbformat.v4.new_markdown_cell("## Part\n\nSome prose.\n\n**Figure 1.1**: written."), figure, shown]
    combined = report.combine([notebook(tmp_path / "01_x.ipynb", cells)], "T")
    assert [cell.source for cell in combined.cells[2:4]] == ["## Part\n\nSome prose.", "**Figure 1.1**: written."]
    from nbconvert import LatexExporter
    latex, _ = LatexExporter(exclude_input=True, extra_template_paths=[str(report.TEMPLATES)],
                             template_file="miniplaces.tex.j2").from_notebook_node(combined)
    body = latex.split(r"\begin{document}")[1]
    assert body.count(r"\figurecaption{") == 2 and r"\begin{center}" not in body
    for number in ("1.1", "1.2"):
        after = body.split(rf"\textbf{{Figure {number}}}")[1]
        assert after.index(r"\nopagebreak") < after.index(r"\adjustimage")
    assert "Some prose." not in body.split(r"\figurecaption{")[1]


@pytest.fixture(scope="module")
def smoke_html(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIPLACES_OUTPUT", str(out))
        built = report.build(profile="smoke", formats=("html",), results_dir=out / "results", progress=False)
    page = built["report"][0].read_text()
    text = html.unescape(re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", page, flags=re.S))
    return page, text


def test_smoke_report_reads_as_a_document(smoke_html):
    page, text = smoke_html
    assert "NaN" not in text and " nan " not in text
    paths = re.findall(r"(?<![\w.])/(?:tmp|work|root|home|usr|var)/[\w./-]+", text)
    assert not paths, paths
    assert text.index("Findings") < text.index("Introduction and data") < text.index("Appendix: provenance")
    assert "Results at a glance" in text and "Table F.1" in text and "Table F.2" in text
    assert sum(text.count(verdict) for verdict in ("reproduced", "not testable in this profile")) >= 6
    assert "McNemar p" in text and "[95% CI]" in text
    assert 'class="report-table"' in page and "Table A.1" in text

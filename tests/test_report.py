"""The report runner: every notebook through papermill in the smoke profile, PDF and HTML export."""
import nbformat
import pytest

from lib import report


def test_smoke_report_end_to_end(tmp_path, monkeypatch):
    """Every notebook runs through papermill (smoke profile); one PDF and one HTML report come out."""
    monkeypatch.setenv("MINIPLACES_OUTPUT", str(tmp_path))
    out = report.build(profile="smoke", results_dir=tmp_path / "results", progress=False)
    names = [p.name for p in out["notebooks"]]
    assert names == [p.name for p in report.notebooks()]
    pdf, html = out["report"]
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000
    assert "MiniPlaces" in html.read_text()
    for path in out["notebooks"]:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, path.name
    assert list((tmp_path / "figures").glob("00_*.png"))


def failing_notebook(directory):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "sample"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, directory / "01_fails.ipynb")


def test_failing_notebook_names_cell_and_keeps_previous_report(tmp_path):
    notebooks, results = tmp_path / "nbs", tmp_path / "results"
    notebooks.mkdir()
    results.mkdir()
    (results / "report.html").write_text("previous good report")
    failing_notebook(notebooks)
    with pytest.raises(report.ReportError, match=r"01_fails.ipynb failed in cell \d+ with ValueError: boom"):
        report.build(profile="smoke", formats=("html",), results_dir=results, directory=notebooks, progress=False)
    assert (results / "report.html").read_text() == "previous good report"


def test_missing_pdf_tools_say_what_to_install(monkeypatch):
    monkeypatch.setattr(report.shutil, "which", lambda tool: None)
    with pytest.raises(report.ReportError, match="apt-get install texlive-xetex .* pandoc"):
        report.check_pdf_tools()

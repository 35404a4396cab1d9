"""lib/report/build.py: every notebook through papermill in the smoke profile, PDF and HTML export, and
the report as a document (Findings first, appendix last, unnumbered sections, typeset tables, no noise).

The document check renders the smoke report as HTML only (no LaTeX run) and reads its text.
"""
import base64
import functools
import html
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

nbformat = pytest.importorskip("nbformat", reason="the report needs the Jupyter stack")
pytest.importorskip("papermill", reason="the report needs the Jupyter stack")

from lib import experiments  # noqa: E402 (after the skips)
from lib.__main__ import main  # noqa: E402 (after the skips)
from lib.data.layout import PROJECT_ROOT  # noqa: E402 (after the skips)
from lib.report import build as report  # noqa: E402 (after the skips)
from lib.report.tables import Table  # noqa: E402 (after the skips)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    """The smoke profile's report built once for this module: (report.build's result, its output folder)."""
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIPLACES_OUTPUT", str(out))
        return report.build(profile="smoke", results_dir=out / "results", progress=False), out


def test_smoke_report_end_to_end(smoke_report):
    """Every notebook runs through papermill (smoke profile); one PDF and one HTML report come out."""
    out, folder = smoke_report
    names = [p.name for p in out["notebooks"]]
    assert names == [p.name for p in report.notebooks()]
    pdf, html_page = out["report"]
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000
    assert "MiniPlaces" in html_page.read_text()
    for path in out["notebooks"]:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, path.name
    assert list((folder / "figures").glob("00_*.png"))


def write_notebook(path, parameters, *codes):
    """A notebook for papermill: a 'parameters' cell, then one code cell per source, on the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(code) for code in codes]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def failing_notebook(directory):
    write_notebook(directory / "01_fails.ipynb", 'profile = "sample"', "x = 1", "raise ValueError('boom')")


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


def settings_notebook(directory):
    """A one-experiment notebook with the report's parameters: runs simplenet through a Study."""
    parameters = ('profile = "sample"\ndata_dir = ""\ndevice = "auto"\nforce_retrain = False\n'
                  'overrides = {}\nattack = {}\ndry_run = False')
    body = ("from lib import experiments\nfrom lib.report.prose import say\n"
            "from lib.study import Study, describe_settings\n"
            "run = Study(profile, data_dir, device, force_retrain, dry_run, overrides).run('simplenet')\n"
            "say('{settings}', settings=describe_settings(profile, overrides, attack, dry_run))\n"
            "say('run {name}, images {images}', name=run.dir.name,\n"
            "    images=experiments.attack_settings(profile, dry_run, **attack)['images'])")
    write_notebook(directory / "01_settings.ipynb", parameters, body)


def test_dry_run_report_with_overrides_lives_apart(tmp_path, monkeypatch, capsys):
    """Overrides and dry_run reach the kernel; the dry run's report, notebooks and run are kept apart."""
    monkeypatch.setenv("MINIPLACES_OUTPUT", str(tmp_path))
    notebooks, results = tmp_path / "nbs", tmp_path / "results"
    notebooks.mkdir()
    settings_notebook(notebooks)
    out = report.build(profile="smoke", formats=("html",), results_dir=results, directory=notebooks, dry_run=True,
                       overrides={"simplenet": {"epochs": 1}}, attack={"epsilon": 8})
    assert out["report"] == [results / "report-dryrun.html"] and not (results / "report.html").exists()
    assert out["notebooks"] == [results / "notebooks-dryrun" / "01_settings.ipynb"]
    html = out["report"][0].read_text()
    assert "DRY RUN: MiniPlaces" in html and experiments.PROFILE_SCOPES["smoke"] in html
    assert "epochs = 1 (registry: 2)" in html and "epsilon = 8/255" in html
    runs = list((tmp_path / "results" / "runs" / "simplenet").iterdir())
    assert [run.name.startswith("smoke-dryrun-") for run in runs] == [True]
    assert f"run {runs[0].name}, images {experiments.DRY_RUN['attack_images']}" in html
    assert out["times"]["01_settings.ipynb"][1:] == (1, 0)  # one run trained, none re-used
    err = capsys.readouterr().err
    assert "[1/1] 01_settings.ipynb (smoke profile, DRY RUN)" in err and "simplenet: epoch 1/1" in err
    assert "Estimated time of this report: " in err
    assert "Kernel is running over TCP without encryption" not in err


@pytest.mark.parametrize("argv, message", [
    (["--profile", "nosuch"], "error: unknown profile 'nosuch'; valid profiles: cpu-full, full, sample, smoke"),
    (["--format", "docx"], "error: unknown report format(s) docx; valid formats: pdf, html"),
    (["--notebooks", "07"], "error: no notebook name starts with 07; notebooks: 00_data, "),
    (["--set", "simplenet.epochs=0"], "error: simplenet: epochs must be an integer >= 1, got 0"),
    (["--set", "simplenet.batch_size=500"], "error: simplenet: batch_size must be from 1 to the number of training"),
    (["--set", "simplenett.epochs=3"], "error: unknown experiment 'simplenett'"),
    (["--set", "attack.eps=8"], "error: unknown attack setting(s) eps; valid: epsilon (pixels /255)"),
    (["--data-dir", "/nonexistent"], "error: /nonexistent/train.txt not found"),
    (["--seeds", "0"], "error: seeds must be an integer >= 1 (training seeds per compared experiment)"),
])
def test_report_checks_its_request_before_any_kernel(tmp_path, monkeypatch, capsys, argv, message):
    started = []
    monkeypatch.setattr(report, "execute_all", lambda *args: started.append(args))  # starts the kernel
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    assert main(["report", "--profile", "smoke", "--format", "html", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not started and not (tmp_path / "results").exists()


def test_papermill_yaml_overrides_reach_a_notebook(tmp_path):
    """The README's command: papermill -y with overrides; notebook 00 states the changed settings."""
    out = tmp_path / "00.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(report.NOTEBOOKS_DIR / "00_data.ipynb"), str(out), "-p", "profile",
           "smoke", "-y", "overrides: {simplenet: {epochs: 20, lr: 0.02}}", "--cwd", str(PROJECT_ROOT)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MINIPLACES_OUTPUT": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    text = "".join(o.get("data", {}).get("text/markdown", "") for c in nbformat.read(out, as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "`simplenet`: epochs = 20 (registry: 2)" in text and "`simplenet`: lr = 0.02 (registry: 0.1)" in text


def test_notebooks_share_one_kernel_each_from_an_empty_namespace(tmp_path):
    """The report runs its notebooks in one kernel; a notebook sees nothing another one defined."""
    notebooks, results = tmp_path / "nbs", tmp_path / "results"
    notebooks.mkdir()
    report_pid = "import os\nprint('pid', os.getpid(), 'count', get_ipython().execution_count)"
    for index, body in enumerate(["leftover = 1", "assert 'leftover' not in globals(), 'namespace kept'"]):
        write_notebook(notebooks / f"0{index}_nb.ipynb", 'profile = "sample"', body, report_pid)
    out = report.build(profile="smoke", formats=("html",), results_dir=results, directory=notebooks, progress=False)
    printed = [nbformat.read(path, as_version=4).cells[-1].outputs[0]["text"].split() for path in out["notebooks"]]
    assert printed[0][1] == printed[1][1]  # the same kernel process
    assert printed[0][3] == printed[1][3]  # each notebook counts its cells from 1


def figure_notebook(path, draw=True):
    """A notebook whose figure caption is followed by a figure drawn with plt and not returned (as the report's
    notebooks do with `plots.*(...);`), or by nothing at all (draw=False)."""
    body = "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);" if draw else "x = 1"
    write_notebook(path, 'profile = "sample"', "from lib.report.prose import say\nsay('**Figure 1.1**: a line.')",
                   body)


def test_figures_are_shown_whatever_backend_the_environment_names(tmp_path, monkeypatch):
    """MPLBACKEND=Agg (usual on servers) in the environment: the report's figures are still in the notebooks
    and the HTML, which opens with the report's title."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebooks, results = tmp_path / "nbs", tmp_path / "results"
    notebooks.mkdir()
    figure_notebook(notebooks / "01_figure.ipynb")
    out = report.build(profile="smoke", formats=("html",), results_dir=results, directory=notebooks, progress=False)
    [executed] = out["notebooks"]
    outputs = nbformat.read(executed, as_version=4).cells[-1].outputs
    assert any("image/png" in output.get("data", {}) for output in outputs)
    html = out["report"][0].read_text()
    body = html[html.index("<body"):]
    assert "data:image/png;base64" in body
    title = re.search(r"<h1[^>]*>MiniPlaces scene classification \(smoke profile\)", body)
    assert title and title.start() < body.index("Contents")


def test_a_figure_without_its_image_stops_the_report(tmp_path, monkeypatch, capsys):
    """A caption whose figure did not come out: exit status 1, one line naming the notebook and the figure, and
    the previous report kept."""
    notebooks, results = tmp_path / "nbs", tmp_path / "results"
    notebooks.mkdir()
    results.mkdir()
    (results / "report.html").write_text("previous good report")
    figure_notebook(notebooks / "01_figure.ipynb", draw=False)
    monkeypatch.setattr(report, "build", functools.partial(report.build, directory=notebooks, results_dir=results,
                                                           progress=False))
    assert main(["report", "--profile", "smoke", "--format", "html"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: notebook 01_figure.ipynb is incomplete: Figure 1.1 has no image.")
    assert err.count("\n") == 1
    assert (results / "report.html").read_text() == "previous good report"


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


def test_smoke_report_reads_as_a_document(smoke_report):
    page = smoke_report[0]["report"][1].read_text()
    text = html.unescape(re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", page, flags=re.S))
    assert "NaN" not in text and " nan " not in text
    paths = re.findall(r"(?<![\w.])/(?:tmp|work|root|home|usr|var)/[\w./-]+", text)
    assert not paths, paths
    assert text.index("Findings") < text.index("Introduction and data") < text.index("Appendix: provenance")
    assert "Results at a glance" in text and "Table F.1" in text and "Table F.2" in text
    outcomes = ("supported", "contradicted", "inconclusive", "not testable in this profile")
    assert sum(text.count(outcome) for outcome in outcomes) >= 15  # every claim of the ledger has its outcome
    assert "The claims ledger" in text and "Figure F.1" in text and "Holm" in text
    assert "McNemar p" in text and "[95% CI]" in text
    assert 'class="report-table"' in page and "Table A.1" in text


SLOW_TRAINING = """
import pathlib, time
from tests.training.toy_training import trainer
def slow(model, images, labels, progress):
    pathlib.Path(run_dir, "training").touch()
    time.sleep(0.2)
    return images, {}
run = trainer(run_dir, epochs=50)
run.input_hook = slow
run.fit()
"""


def test_ctrl_c_during_a_report_saves_the_kernels_training_step_and_ends_with_one_line(tmp_path, monkeypatch, capsys):
    """SIGINT to the report's process while a notebook's kernel trains: the kernel's run saves the step it reached,
    the report ends with exit 130 and one line (no traceback), and the previous report and no staging are left."""
    notebooks, results, run_dir = tmp_path / "nbs", tmp_path / "results", tmp_path / "run"
    notebooks.mkdir()
    results.mkdir()
    (results / "report.html").write_text("previous good report")
    write_notebook(notebooks / "00_train.ipynb", f"run_dir = {str(run_dir)!r}", SLOW_TRAINING)
    monkeypatch.setattr(report, "build", functools.partial(report.build, directory=notebooks, results_dir=results,
                                                           progress=False))

    def ctrl_c_once_training():
        deadline = time.monotonic() + 120
        while not (run_dir / "training").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=ctrl_c_once_training, daemon=True).start()
    assert main(["report", "--profile", "smoke", "--format", "html"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"interrupted: SIGINT stopped the report in 00_train.ipynb (SIGINT stopped the training run "
                          f"in {run_dir} at step ")
    assert torch.load(run_dir / "checkpoint.pth", weights_only=True)["partial"]["position"] >= 1
    assert (results / "report.html").read_text() == "previous good report"
    assert sorted(p.name for p in results.iterdir()) == ["report.html"]

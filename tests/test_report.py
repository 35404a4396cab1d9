"""The report runner: every notebook through papermill in the smoke profile, PDF and HTML export."""
import functools
import io
import os
import re
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat", reason="the report needs the Jupyter stack")
pytest.importorskip("papermill", reason="the report needs the Jupyter stack")

from lib import data, experiments  # noqa: E402 (after the skips)
from lib.__main__ import main  # noqa: E402 (after the skips)
from lib.core import progress  # noqa: E402 (after the skips)
from lib.data.layout import PROJECT_ROOT  # noqa: E402 (after the skips)
from lib.report import build as report, completeness  # noqa: E402 (after the skips)


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
    monkeypatch.setattr(report, "execute", lambda *args: started.append(args))
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


def test_monitor_prints_runs_and_epochs_with_eta(tmp_path):
    run_dir, lines = tmp_path / "run", io.StringIO()
    run_dir.mkdir()
    with progress.Monitor(tmp_path / "progress.jsonl", out=lines, interval=60) as monitor:
        announce = lambda event: progress.announce(event, "simplenet", run_dir, {"epochs": 4})
        announce("train")
        announce("fit")
        monitor.poll()
        (run_dir / "history.csv").write_text("epoch,val_acc1\n1,3.5\n2,4.25\n")
        monitor.poll()
        announce("finished")
        announce("cached")  # the run just trained, re-used in the same section: not announced again
        progress.announce("cached", "vit", tmp_path / "vit", {"epochs": 6})
        progress.announce("cached", "vit", tmp_path / "vit", {"epochs": 6})
        monitor.section("next notebook")
        progress.announce("cached", "vit", tmp_path / "vit", {"epochs": 6})
    printed = lines.getvalue()
    assert f"simplenet: training 4 epochs in {run_dir}" in printed
    assert "simplenet: epoch 2/4  val top-1 4.25%" in printed and "ETA" in printed
    assert "simplenet: finished in" in printed and f"vit: re-using the finished run in {tmp_path / 'vit'}" in printed
    assert [e["event"] for e in monitor.events] == ["train", "fit", "finished", "cached", "cached"]
    assert printed.count("vit: re-using the finished run") == 2 and "simplenet: re-using" not in printed
    assert progress.PROGRESS_ENV not in os.environ
    table = progress.time_table({"00_data.ipynb": (8.2, 0, 0), "01_convolution.ipynb": (383.0, 4, 0)})
    assert table.splitlines()[2].split() == ["01_convolution.ipynb", "6", "min", "23", "s", "4", "0"]
    assert table.splitlines()[-1].split() == ["total", "6", "min", "31", "s"]


def test_monitor_polling_after_a_short_run_does_not_call_it_resumed(tmp_path):
    """A run that trains and finishes between two polls is shown as fresh, with its epoch, not as resumed."""
    run_dir, lines = tmp_path / "run", io.StringIO()
    run_dir.mkdir()
    with progress.Monitor(tmp_path / "progress.jsonl", out=lines, interval=60) as monitor:
        progress.announce("train", "simplenet", run_dir, {"epochs": 1})
        (run_dir / "history.csv").write_text("epoch,val_acc1\n1,3.5\n")
        progress.announce("finished", "simplenet", run_dir, {"epochs": 1})
        monitor.poll()
    printed = lines.getvalue()
    assert "resuming" not in printed and "simplenet: epoch 1/1  val top-1 3.50%" in printed


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


def test_monitor_prints_when_a_data_set_is_decoded(tmp_path, monkeypatch):
    """Decoding a split once (minutes on the full data set) shows in the terminal, not as a training run."""
    monkeypatch.setattr(data.decoded, "cache_dir", lambda root: tmp_path)
    lines = io.StringIO()
    with progress.Monitor(tmp_path / "progress.jsonl", out=lines, interval=60) as monitor:
        data.load_split(data.SAMPLE_ROOT, "val", 32, limit=5)
        monitor.poll()
    printed = lines.getvalue()
    assert f"decode val at {data.base_size(32)}px (once): 5 images into {tmp_path}" in printed
    assert "decoded 5 images in" in printed and monitor.events == []


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

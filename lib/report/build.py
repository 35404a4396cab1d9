"""Run the notebooks with papermill and export one combined report (PDF through LaTeX, and HTML).

Executed notebooks go to results/notebooks/, the report to results/report.pdf and results/report.html (a dry
run: results/notebooks-dryrun/ and results/report-dryrun.*). Everything a request needs is checked before a
kernel starts; everything is produced in a staging folder first and moved into place only when every notebook
ran and every export succeeded, so a failure never overwrites the previous good report. The notebooks run in one
kernel (lib.report.kernel); an interruption or a full disk removes the staging folder, which holds nothing finished.
"""
import copy
from pathlib import Path
import re
import shutil
import sys
import time

import nbformat

from lib import study
from lib.core.errors import DiskFullError
from lib.core.space import reporting_full_disk
from lib.data.layout import PROJECT_ROOT
from lib.report import ReportError, estimate
from lib.report.kernel import execute_all
from lib.study.parameters import Study
from lib.study.registry import RESULTS_DIR


NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
TEMPLATES = Path(__file__).parent / "templates"
HTML_ONLY = "html-only"  # cells the PDF export drops (its headings and contents come from LaTeX)
HEADING = re.compile(r"\A(#{1,6})\s+(.+)")
PDF_TOOLS = ("xelatex", "pandoc")
PDF_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc"


def notebooks(directory=NOTEBOOKS_DIR):
    """The report's notebooks in order (file name order: 00_..., 01_..., ...)."""
    found = sorted(Path(directory).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ReportError(f"no notebooks named NN_*.ipynb in {directory}")
    return found


def check_pdf_tools():
    """Fail with the install command when the LaTeX route of nbconvert cannot run."""
    missing = [tool for tool in PDF_TOOLS if shutil.which(tool) is None]
    if missing:
        raise ReportError(f"PDF export needs {' and '.join(missing)}, which are not installed. On Debian/Ubuntu: "
                          f"sudo apt-get install {PDF_PACKAGES} (`make report` does this), or export HTML only "
                          "with `python -m lib report --format html`.")


def _report_cell(cell):
    """A copy of a cell for the report: displayed outputs only, without printed logs or progress bars
    (streams, widgets); the prose, tables and figures are displayed."""
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs = [out for out in cell.outputs if out.output_type != "stream"
                        and "application/vnd.jupyter.widget-view+json" not in out.get("data", {})]
    return cell


def _split_caption(cell):
    """[cell], or for a Markdown cell whose last paragraphs begin with a figure caption ('**Figure'), the text
    before the caption and the caption as two cells, so that the PDF template can keep the caption with its
    figure (lib/templates/miniplaces.tex.j2)."""
    at = cell.source.find("\n\n**Figure") if cell.cell_type == "markdown" else -1
    if at < 0:
        return [cell]
    before, caption = copy.deepcopy(cell), copy.deepcopy(cell)
    before.source, caption.source = cell.source[:at].rstrip(), cell.source[at:].strip()
    return [before, caption]


def _heading(cell):
    """(level, text) of a markdown cell that starts with a heading line, else None."""
    if cell.cell_type != "markdown":
        return None
    match = HEADING.match(cell.source)
    return (len(match.group(1)), match.group(2).strip()) if match else None


def _unnumbered(cell, level, text):
    """A heading cell tagged 'unnumbered' as an unnumbered LaTeX section listed in the table of contents (a raw
    cell, which only the PDF keeps) and the same Markdown heading tagged 'html-only' (which the PDF drops); the
    rest of the cell's Markdown stays a Markdown cell for both."""
    command = ("section", "subsection", "subsubsection")[min(level, 3) - 1]
    latex = nbformat.v4.new_raw_cell(rf"\{command}*{{{text}}}\addcontentsline{{toc}}{{{command}}}{{{text}}}",
                                     metadata={"raw_mimetype": "text/latex"})
    heading = nbformat.v4.new_markdown_cell(f"{'#' * level} {text}", metadata={"tags": [HTML_ONLY]})
    rest = cell.source.split("\n", 1)[1].strip() if "\n" in cell.source else ""
    return [latex, heading] + ([nbformat.v4.new_markdown_cell(rest)] if rest else [])


def _html_contents(cells):
    """A table of contents for the HTML (a Markdown cell tagged 'html-only'; the PDF's comes from LaTeX): the
    headings of levels 1-2, numbered as the PDF numbers them, linked to nbconvert's heading anchors."""
    numbers, lines = [0, 0], []
    for cell in cells:
        heading = _heading(cell)
        if not heading or heading[0] > 2:
            continue
        level, text = heading
        unnumbered = HTML_ONLY in cell.metadata.get("tags", [])
        if not unnumbered:
            numbers[level - 1] += 1
            numbers[level:] = [0] * (2 - level)
        label = "" if unnumbered else ".".join(str(n) for n in numbers[:level]) + " "
        lines.append(f"{'    ' * (level - 1)}- {label}[{text}](#{text.replace(' ', '-')})")
    return nbformat.v4.new_markdown_cell("**Contents**\n\n" + "\n".join(lines), metadata={"tags": [HTML_ONLY]})


def combine(executed, title):
    """One notebook holding the cells of every executed notebook, for a single report.

    Notebooks whose metadata says {"report": {"placement": "front"}} (the findings, executed last because
    they read every other notebook's results) come first, and cells tagged 'appendix' last; heading cells
    tagged 'unnumbered' become unnumbered sections; the HTML gets a table of contents (the PDF's comes from
    LaTeX).
    """
    nbs = [nbformat.read(path, as_version=4) for path in executed]
    front = [i for i, nb in enumerate(nbs) if nb.metadata.get("report", {}).get("placement") == "front"]
    order = front + [i for i in range(len(nbs)) if i not in front]
    combined = nbformat.v4.new_notebook(metadata=copy.deepcopy(nbs[0].metadata))
    combined.metadata["title"] = title
    combined.metadata.pop("report", None)
    body, appendix = [], []
    for index in order:
        for cell in nbs[index].cells:
            tags = set(cell.metadata.get("tags", []))
            if {"parameters", "injected-parameters"} & tags:
                continue
            heading = _heading(cell)
            cells = _unnumbered(cell, *heading) if heading and "unnumbered" in tags else _split_caption(
                _report_cell(cell))
            for number, new in enumerate(cells):
                new.id = f"nb{index}-{cell.id}" + (f"-{number}" if number else "")
                (appendix if "appendix" in tags else body).append(new)
    contents = _html_contents(body + appendix)
    contents.id = "contents"
    combined.cells = [_html_title(title), contents] + body + appendix
    return combined


def _html_title(title):
    """The report's title as the HTML's first heading (a cell tagged 'html-only': the PDF's title comes from
    LaTeX's maketitle)."""
    cell = nbformat.v4.new_markdown_cell(f"# {title}", metadata={"tags": [HTML_ONLY]})
    cell.id = "title"
    return cell


def export(notebook, stem, formats):
    """Write stem.pdf / stem.html from a notebook with code cells hidden; returns the written paths.

    The PDF uses lib/templates/miniplaces.tex.j2 (nbconvert's article with a table of contents and table captions).
    """
    from nbconvert import HTMLExporter, PDFExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    exporters = {"pdf": PDFExporter, "html": HTMLExporter}
    written = []
    for fmt in formats:
        options = dict(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        if fmt == "pdf":
            options.update(extra_template_paths=[str(TEMPLATES)], template_file="miniplaces.tex.j2",
                           raw_mimetypes=["text/latex", ""])  # the PDF exporter would keep only raw PDF
        exporter = exporters[fmt](**options)
        if fmt == "pdf":
            exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=[HTML_ONLY], enabled=True), True)
        path = stem.with_suffix(f".{fmt}")
        try:
            with reporting_full_disk(f"the {fmt.upper()} report", path, partial=path):
                body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": stem.name}})
                path.write_bytes(body if isinstance(body, bytes) else body.encode())
        except DiskFullError:
            raise
        except Exception as error:  # nbconvert raises LatexFailed, OSError and others: name the format
            raise ReportError(f"exporting the {fmt.upper()} report failed: {error}") from error
        written.append(path)
    return written


def report_notebook(executed, profile, dry_run):
    """The report as one notebook (`combine`) of the executed notebooks, titled and scoped for `profile`."""
    title = f"MiniPlaces scene classification ({profile} profile)"
    combined = combine(executed, f"DRY RUN: {title}" if dry_run else title)
    combined.cells.insert(1, nbformat.v4.new_markdown_cell(f"**This report**: {study.PROFILE_SCOPES[profile]}."))
    if dry_run:
        combined.cells.insert(1, nbformat.v4.new_markdown_cell(
            "**DRY RUN**: every training run, evaluation and attack of this report was capped to a few batches "
            "to test the whole pipeline; its numbers are not results."))
    return combined


def check_request(profile="sample", formats=("pdf", "html"), selected=None, directory=NOTEBOOKS_DIR,
                  data_dir=None, overrides=None, attack=None, dry_run=False, seeds=None):
    """Check a report request before any kernel starts: profile, settings of every experiment (with the
    overrides, against the data), seeds, attack settings, formats and notebook names. Returns the chosen notebooks.

    Raises ConfigError, DataError or ReportError with one line that says what is valid.
    """
    parameters = Study(profile, str(data_dir or ""), dry_run=dry_run, overrides=overrides or {}, seeds=seeds)
    for name in study.EXPERIMENTS:
        study.check_data(parameters.config(name))
    study.attack_settings(profile, dry_run, **(attack or {}))
    unknown = set(formats) - {"pdf", "html"}
    if unknown or not formats:
        raise ReportError(f"unknown report format(s) {', '.join(sorted(unknown))}; valid formats: pdf, html")
    if "pdf" in formats:
        check_pdf_tools()
    found = notebooks(directory)
    missing = [prefix for prefix in selected or () if not any(nb.name.startswith(prefix) for nb in found)]
    if missing:
        raise ReportError(f"no notebook name starts with {', '.join(missing)}; notebooks: "
                          f"{', '.join(nb.stem for nb in found)}")
    return [nb for nb in found if not selected or any(nb.name.startswith(prefix) for prefix in selected)]


def build(profile="sample", data_dir=None, device="auto", force_retrain=False, formats=("pdf", "html"),
          selected=None, results_dir=RESULTS_DIR, progress=True, directory=NOTEBOOKS_DIR, overrides=None,
          attack=None, dry_run=False, seeds=None):
    """Execute the notebooks of `directory` (all, or those whose names start with one of `selected`) with
    these parameters and export the report; `progress` prints each notebook, run and epoch to stderr.

    overrides: {experiment: {setting: value}}; attack: {epsilon, step_size (/255), steps, images}; seeds: training
    seeds per compared experiment (None: the profile's default, lib.study.registry.SEEDS); dry_run:
    capped runs of their own (study.DRY_RUN) and a report named report-dryrun, titled DRY RUN.
    Before the first notebook, `progress` also prints the report's estimated time (lib.report.estimate).
    Returns {'notebooks': [...], 'report': [...], 'times': {notebook: (seconds, runs trained, runs re-used)},
    'seconds': wall time, 'estimate': lib.report.estimate.estimate's result (None without `progress`)}.
    """
    start = time.perf_counter()
    chosen = check_request(profile, formats, selected, directory, data_dir, overrides, attack, dry_run, seeds)
    results_dir = Path(results_dir)
    parameters = dict(profile=profile, data_dir=str(data_dir) if data_dir else "", device=device,
                      force_retrain=bool(force_retrain), overrides=overrides or {}, attack=attack or {},
                      dry_run=bool(dry_run), seeds=seeds)
    expected = None
    if progress:
        expected = estimate.estimate(Study(profile, str(data_dir or ""), device, bool(force_retrain), bool(dry_run),
                                           overrides or {}, seeds), attack)
        print(estimate.describe(expected), file=sys.stderr, flush=True)
    stage = results_dir / f".staging-{time.strftime('%Y%m%d-%H%M%S')}"
    stage.mkdir(parents=True)
    try:
        executed, times = execute_all(chosen, stage, parameters, progress, f"{profile} profile"
                                                                          f"{', DRY RUN' if dry_run else ''}")
        report = export(report_notebook(executed, profile, dry_run),
                        stage / ("report-dryrun" if dry_run else "report"), formats)
    except (KeyboardInterrupt, DiskFullError):
        shutil.rmtree(stage, ignore_errors=True)  # nothing finished is there: the runs and analyses are elsewhere
        raise
    final_notebooks = results_dir / ("notebooks-dryrun" if dry_run else "notebooks")
    final_notebooks.mkdir(parents=True, exist_ok=True)
    placed = [Path(shutil.move(path, final_notebooks / path.name)) for path in executed]
    placed_report = [Path(shutil.move(path, results_dir / path.name)) for path in report]
    shutil.rmtree(stage)
    return {"notebooks": placed, "report": placed_report, "times": times, "seconds": time.perf_counter() - start,
            "estimate": expected}


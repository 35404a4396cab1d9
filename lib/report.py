"""Run the notebooks with papermill and export one combined report (PDF through LaTeX, and HTML).

Executed notebooks go to results/notebooks/, the report to results/report.pdf and results/report.html.
Everything is produced in a staging folder first and moved into place only when every notebook ran and
every export succeeded, so a failure never overwrites the previous good report.
"""
import copy
import re
import shutil
import time
from pathlib import Path

import nbformat
import papermill

from lib.data import PROJECT_ROOT
from lib.experiments import RESULTS_DIR

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
TEMPLATES = Path(__file__).parent / "templates"
HEADING = re.compile(r"\A(#{1,6})\s+(.+)")
PDF_TOOLS = ("xelatex", "pandoc")
PDF_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc"


class ReportError(RuntimeError):
    """A notebook failed or an export tool is missing; the message names the notebook/cell or the fix."""


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


def execute(notebook, output, parameters, progress=True):
    """Execute one notebook with papermill into `output`; a failing cell raises ReportError naming it."""
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(PROJECT_ROOT),
                                   progress_bar=progress, kernel_name="python3")
    except papermill.PapermillExecutionError as error:
        raise ReportError(f"notebook {notebook.name} failed in cell {error.exec_count} with {error.ename}: "
                          f"{error.evalue}. The executed copy with the traceback is {output}; the previous "
                          "report was left as it was.") from error


def _report_cell(cell):
    """A copy of a cell for the report: outputs without progress bars (stderr, widgets)."""
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs = [out for out in cell.outputs if not (
            out.output_type == "stream" and out.name == "stderr"
            or "application/vnd.jupyter.widget-view+json" in out.get("data", {}))]
    return cell


def _heading(cell):
    """(level, text) of a markdown cell that starts with a heading line, else None."""
    if cell.cell_type != "markdown":
        return None
    match = HEADING.match(cell.source)
    return (len(match.group(1)), match.group(2).strip()) if match else None


def _unnumbered(cell, level, text):
    """A heading cell tagged 'unnumbered' as two raw cells: an unnumbered LaTeX section listed in the table of
    contents, and the same HTML heading; the rest of the cell's Markdown stays a Markdown cell."""
    command = ("section", "subsection", "subsubsection")[min(level, 3) - 1]
    anchor = text.replace(" ", "-")
    latex = nbformat.v4.new_raw_cell(rf"\{command}*{{{text}}}\addcontentsline{{toc}}{{{command}}}{{{text}}}",
                                     metadata={"raw_mimetype": "text/latex"})
    html = nbformat.v4.new_raw_cell(f'<h{level} id="{anchor}">{text}</h{level}>', metadata={"raw_mimetype": "text/html"})
    rest = cell.source.split("\n", 1)[1].strip() if "\n" in cell.source else ""
    return [latex, html] + ([nbformat.v4.new_markdown_cell(rest)] if rest else [])


def _html_contents(cells):
    """A raw HTML table of contents of the combined cells' headings (levels 1-2), numbered as the PDF numbers them."""
    numbers, items = [0, 0], []
    for cell in cells:
        if cell.cell_type == "raw" and cell.metadata.get("raw_mimetype") == "text/html":
            match = re.match(r'<h([12]) id="([^"]+)">(.*)</h', cell.source)
            if match:
                items.append((int(match.group(1)), "", match.group(2), match.group(3)))
            continue
        heading = _heading(cell)
        if heading and heading[0] <= 2:
            level, text = heading
            numbers[level - 1] += 1
            numbers[level:] = [0] * (2 - level)
            label = ".".join(str(n) for n in numbers[:level])
            items.append((level, label, text.replace(" ", "-"), text))
    entries = "".join(f'<li style="margin-left: {2 * (level - 1)}em; list-style: none">{label} '
                      f'<a href="#{anchor}">{text}</a></li>' for level, label, anchor, text in items)
    return nbformat.v4.new_raw_cell(f"<h2>Contents</h2><ul>{entries}</ul>", metadata={"raw_mimetype": "text/html"})


def combine(executed, title):
    """One notebook holding the cells of every executed notebook, for a single report.

    Notebooks whose metadata says {"report": {"placement": "front"}} (the findings, executed last because
    they read every other notebook's results) come first; heading cells tagged 'unnumbered' become unnumbered
    sections; the HTML gets a table of contents (the PDF's comes from LaTeX).
    """
    nbs = [nbformat.read(path, as_version=4) for path in executed]
    front = [i for i, nb in enumerate(nbs) if nb.metadata.get("report", {}).get("placement") == "front"]
    order = front + [i for i in range(len(nbs)) if i not in front]
    combined = nbformat.v4.new_notebook(metadata=copy.deepcopy(nbs[0].metadata))
    combined.metadata["title"] = title
    combined.metadata.pop("report", None)
    for index in order:
        for cell in nbs[index].cells:
            if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", [])):
                continue
            heading = _heading(cell)
            cells = (_unnumbered(cell, *heading) if heading and "unnumbered" in cell.metadata.get("tags", [])
                     else [_report_cell(cell)])
            for number, new in enumerate(cells):
                new.id = f"nb{index}-{cell.id}" + (f"-{number}" if number else "")
                combined.cells.append(new)
    contents = _html_contents(combined.cells)
    contents.id = "contents"
    combined.cells.insert(0, contents)
    return combined


def export(notebook, stem, formats):
    """Write stem.pdf / stem.html from a notebook with code cells hidden; returns the written paths.

    The PDF uses lib/templates/report.tex.j2 (nbconvert's article with a table of contents and table captions).
    """
    from nbconvert import HTMLExporter, PDFExporter
    exporters = {"pdf": PDFExporter, "html": HTMLExporter}
    written = []
    for fmt in formats:
        options = dict(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        if fmt == "pdf":
            options.update(extra_template_basedirs=[str(TEMPLATES)], template_file="report.tex.j2")
        exporter = exporters[fmt](**options)
        try:
            body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": stem.name}})
        except Exception as error:  # nbconvert raises LatexFailed, OSError and others: name the format
            raise ReportError(f"exporting the {fmt.upper()} report failed: {error}") from error
        path = stem.with_suffix(f".{fmt}")
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        written.append(path)
    return written


def build(profile="sample", data_dir=None, device="auto", force_retrain=False, formats=("pdf", "html"),
          selected=None, results_dir=RESULTS_DIR, progress=True, directory=NOTEBOOKS_DIR):
    """Execute the notebooks of `directory` (all, or those whose names start with one of `selected`) and
    export the report.

    Returns {'notebooks': [...], 'report': [...], 'seconds': wall time}.
    """
    start = time.perf_counter()
    unknown = set(formats) - {"pdf", "html"}
    if unknown:
        raise ReportError(f"unknown report format(s) {sorted(unknown)}; use pdf and/or html")
    if "pdf" in formats:
        check_pdf_tools()
    chosen = [nb for nb in notebooks(directory) if not selected or any(nb.name.startswith(s) for s in selected)]
    results_dir = Path(results_dir)
    stage = results_dir / f".staging-{time.strftime('%Y%m%d-%H%M%S')}"
    stage.mkdir(parents=True)
    parameters = dict(profile=profile, data_dir=str(data_dir) if data_dir else "", device=device,
                      force_retrain=bool(force_retrain))
    executed = []
    for nb in chosen:
        print(f"== executing {nb.name} ({profile} profile)", flush=True)
        out = stage / nb.name
        execute(nb, out, parameters, progress)
        executed.append(out)
    report = export(combine(executed, f"MiniPlaces scene classification ({profile} profile)"),
                    stage / "report", formats)
    final_notebooks = results_dir / "notebooks"
    final_notebooks.mkdir(parents=True, exist_ok=True)
    placed = [Path(shutil.move(path, final_notebooks / path.name)) for path in executed]
    placed_report = [Path(shutil.move(path, results_dir / path.name)) for path in report]
    shutil.rmtree(stage)
    return {"notebooks": placed, "report": placed_report, "seconds": time.perf_counter() - start}

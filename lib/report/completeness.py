"""Whether an executed notebook holds everything the report shows: no error output, and an image after every
figure caption.

A figure caption is a Markdown paragraph (in a Markdown cell or a displayed Markdown output) that starts with
"**Figure N.M**"; its image is the first image output after it, before the next caption or heading. An executed
notebook is read as plain data (the dicts of nbformat), so this module needs no Jupyter package.
"""
import re

from lib.report import IncompleteReport


CAPTION = re.compile(r"\A\*\*(Figure [^*]+)\*\*")
HEADING = re.compile(r"\A#{1,6}\s")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def _items(nb):
    """The notebook's shown content in order: ('caption', 'Figure 1.1'), ('heading', None), ('image', None) and
    ('error', 'cell N: Name: value') items."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            yield from _markdown_items(cell["source"])
        elif cell["cell_type"] == "code":
            for output in cell.get("outputs", []):
                if output["output_type"] == "error":
                    yield "error", f"cell {cell.get('execution_count')}: {output['ename']}: {output['evalue']}"
                    continue
                shown = output.get("data", {})
                yield from _markdown_items(shown.get("text/markdown", ""))
                if any(kind in shown for kind in IMAGE_TYPES):
                    yield "image", None


def _markdown_items(source):
    """('heading', None) and ('caption', label) for the paragraphs of Markdown `source` (str or list of lines)."""
    text = "".join(source) if isinstance(source, list) else source
    for paragraph in text.split("\n\n"):
        paragraph = paragraph.strip()
        caption = CAPTION.match(paragraph)
        if HEADING.match(paragraph):
            yield "heading", None
        elif caption:
            yield "caption", caption.group(1).strip().rstrip(":")


def missing(nb):
    """What `nb` (an executed notebook as a dict) lacks: ['cell 4: ValueError: boom', 'Figure 2.1 has no
    image', ...], empty when it is complete."""
    problems, waiting = [], None
    for kind, label in _items(nb):
        if kind == "error":
            problems.append(label)
            continue
        if kind == "image":
            waiting = None
            continue
        if waiting:
            problems.append(f"{waiting} has no image")
        waiting = label if kind == "caption" else None
    if waiting:
        problems.append(f"{waiting} has no image")
    return problems


def check(nb, name, path):
    """Raise IncompleteReport naming notebook `name`, its first problem, and the executed copy at `path`."""
    problems = missing(nb)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IncompleteReport(f"notebook {name} is incomplete: {problems[0]}{more}. The executed copy is {path}; "
                               "the previous report was left as it was.")

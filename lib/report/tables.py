"""Typeset tables for the report: one display object that renders as LaTeX in the PDF and HTML in the HTML.

`Table(rows, caption, number)` shows a numbered caption above booktabs rules (`\\toprule`, `\\midrule`,
`\\bottomrule`) in a non-floating `table[H]` (it never breaks across a page and stays where the notebook
puts it), shrunk to the text width if it is wider. Cells are formatted once, per column: fixed decimals,
thousands separators for integers, an en dash for a missing value (None or NaN). There is no index column:
the first column labels the rows. `transpose=True` turns a wide table of few rows into a tall one (one row
per former column), which is how wide comparisons are laid out by design.
"""
import html
import math
import numbers
import re

import pandas as pd


MISSING = "–"  # en dash
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def format_cell(value, digits=2):
    """One cell as text: en dash when missing, `digits` decimals for a float, thousands separators for an int.

    digits may also be a callable value -> str (applied to present values only).
    """
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value)):
        return MISSING
    if callable(digits):
        return digits(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if isinstance(value, numbers.Real):
        return "∞" if math.isinf(value) else f"{value:,.{digits}f}"
    return str(value)


def latex_escape(text):
    """Text with LaTeX's special characters escaped (the rest, including Unicode, kept for XeLaTeX)."""
    return "".join(_LATEX_ESCAPES.get(char, char) for char in str(text))


class Table:
    """A report table. rows: a list of dicts (one per row) or a DataFrame; its first column labels the rows.

    caption: one sentence or more (plain text); number: the label shown as "Table <number>" (e.g. "4.1").
    digits: decimals for every float column (default 2), or {column: decimals or callable} per column.
    transpose: lay the table out with one row per column of `rows` and one column per row (headers from
    the first column). Missing values print as an en dash.
    """

    def __init__(self, rows, caption, number, digits=2, transpose=False):
        records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(row) for row in rows]
        columns = list(dict.fromkeys(key for row in records for key in row))
        if not columns:
            raise ValueError("a table needs at least one row and one column")
        self.caption, self.number = caption, str(number)
        per_column = digits if isinstance(digits, dict) else {}
        default = 2 if isinstance(digits, dict) else digits
        values = {column: [row.get(column) for row in records] for column in columns}
        cells = [[format_cell(value, per_column.get(column, default)) for value in values[column]]
                 for column in columns]
        numeric = [all(_numeric(v) for v in values[column]) for column in columns]
        header = [str(column) for column in columns]
        if transpose:
            self.header = [header[0]] + cells[0]
            self.body = [[name] + row for name, row in zip(header[1:], cells[1:])]
            self.align = "l" + "r" * len(records)
        else:
            self.header = header
            self.body = [list(row) for row in zip(*cells)]
            self.align = "l" + "".join("r" if is_number else "l" for is_number in numeric[1:])

    # -- renderings
    def _repr_latex_(self):
        align = self.align
        lines = [r"\begin{table}[H]", r"\centering", r"\small", rf"\renewcommand{{\thetable}}{{{self.number}}}",
                 rf"\caption{{{latex_escape(self.caption)}}}", r"\begin{adjustbox}{max width=\linewidth}",
                 rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                 " & ".join(_latex_header(cell) for cell in self.header) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in self.body]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{adjustbox}", r"\end{table}"]
        return "\n".join(lines)

    def _repr_html_(self):
        head = "".join(f"<th>{_html_header(cell)}</th>" for cell in self.header)
        body = "".join("<tr>" + "".join(f'<td style="text-align: {_HTML_ALIGN[a]}">{html.escape(cell)}</td>'
                                        for cell, a in zip(row, self.align)) + "</tr>" for row in self.body)
        return (f'<table class="report-table" style="{_HTML_STYLE}"><caption style="caption-side: top; '
                f'text-align: left"><b>Table {html.escape(self.number)}</b>: {html.escape(self.caption)}</caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __repr__(self):
        widths = [max(len(row[i]) for row in [self.header] + self.body) for i in range(len(self.header))]
        lines = [f"Table {self.number}: {self.caption}"]
        lines += ["  ".join(cell.replace("\n", " ").ljust(w) for cell, w in zip(row, widths))
                  for row in [self.header] + self.body]
        return "\n".join(lines)


_HTML_ALIGN = {"l": "left", "r": "right"}
_HTML_STYLE = "border-collapse: collapse; border-top: 2px solid black; border-bottom: 2px solid black; margin: 1em 0"


def _numeric(value):
    """Whether a cell reads as a number (right-aligned): a number, a missing value, or text such as
    '7.0 [3.4, 13.7]', '+1.2 [...]', '< 0.001' or '5 / 1' that starts with one."""
    if value is None or isinstance(value, numbers.Real):
        return True
    return isinstance(value, str) and re.match(r"^(<\s*)?[+\-−]?\d", value) is not None


def _latex_header(cell):
    """A header cell; a newline in it breaks the header over two lines."""
    parts = [latex_escape(part) for part in cell.split("\n")]
    return parts[0] if len(parts) == 1 else r"\begin{tabular}[b]{@{}c@{}}" + r" \\{} ".join(parts) + r"\end{tabular}"


def _html_header(cell):
    return "<br>".join(html.escape(part) for part in cell.split("\n"))

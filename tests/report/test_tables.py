"""The report's table display: a LaTeX tabular with booktabs rules and a numbered caption, an HTML table."""
import math

import pandas as pd
import pytest

from lib.report.tables import MISSING, Table, format_cell


ROWS = [{"model": "SimpleNet", "epochs": 8, "top-1 (%)": 7.0666, "reference": 44.22},
        {"model": "AdvSimpleNet_x", "epochs": 3, "top-1 (%)": 2.7, "reference": None},
        {"model": "ViT", "epochs": 1500, "top-1 (%)": math.nan, "reference": float("nan")}]


def test_latex_is_a_captioned_booktabs_tabular_without_index():
    latex = Table(ROWS, "Accuracy of 100% of runs", "2.1", digits={"top-1 (%)": 1})._repr_latex_()
    assert r"\begin{tabular}{lrrr}" in latex
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"\caption{Accuracy of 100\% of runs}" in latex and r"\renewcommand{\thetable}{2.1}" in latex
    assert r"\begin{table}[H]" in latex  # not floating: stays in place, never split
    body = latex.split(r"\midrule")[1]
    assert body.splitlines()[1].startswith("SimpleNet & 8 & 7.1 & 44.22")  # no 0..n index column
    assert r"AdvSimpleNet\_x" in latex
    assert "NaN" not in latex and "nan" not in latex and "None" not in latex
    assert f"ViT & 1,500 & {MISSING} & {MISSING}" in latex


def test_html_table_with_caption_and_en_dash():
    page = Table(ROWS, "Accuracy", "2.1")._repr_html_()
    assert page.startswith("<table") and "<caption" in page and "<b>Table 2.1</b>: Accuracy" in page
    assert page.count("<tr>") == 4 and MISSING in page and "NaN" not in page


def test_transpose_turns_columns_into_rows():
    table = Table(ROWS, "Wide", "1", transpose=True)
    assert table.header == ["model", "SimpleNet", "AdvSimpleNet_x", "ViT"]
    assert [row[0] for row in table.body] == ["epochs", "top-1 (%)", "reference"]


def test_header_line_break_and_plain_text():
    table = Table(pd.DataFrame({"a": ["x"], "val\ntop-1": [1.0]}), "c", "3")
    assert r"\begin{tabular}[b]{@{}c@{}}val \\{} top-1\end{tabular}" in table._repr_latex_()
    assert "val<br>top-1" in table._repr_html_()
    assert repr(table).startswith("Table 3: c")


def test_cells():
    assert format_cell(None) == MISSING and format_cell(float("nan")) == MISSING
    assert format_cell(3.14159, 3) == "3.142" and format_cell(12345) == "12,345"
    assert format_cell(True) == "yes" and format_cell(0.5, lambda v: f"{v:.0%}") == "50%"
    with pytest.raises(ValueError, match="at least one row"):
        Table([], "empty", "1")

"""The report: analyses of finished runs, cost measurements, statistics, findings, tables, figures, and
the build that executes the notebooks (lib.report.build, the only module that needs the Jupyter stack).

Modules are imported by name (`from lib.report import stats`); importing the package loads nothing else.
"""


class ReportError(RuntimeError):
    """A notebook failed or an export tool is missing; the message names the notebook/cell or the fix."""


class IncompleteReport(ReportError):
    """An executed notebook lacks what the report shows (a cell failed, an error output, a figure without its
    image); the command line exits with status 1."""

"""Running the report's notebooks: one kernel for all of them, each notebook executed by papermill from an empty
namespace, the runs and epochs of its kernel shown in the terminal (lib.core.progress), its cells checked
(lib.report.completeness). Ctrl-C (SIGINT) or SIGTERM is passed on to the kernel as SIGINT, which stops a training
run there at its next step with a checkpoint of it (lib.core.interrupt), and the report ends with Interrupted; a full
disk ends it with DiskFullError.
"""
import contextlib
import os
import signal
import sys
import time

from jupyter_client import KernelManager
import nbformat
import papermill
from traitlets.config import Config
import zmq

from lib.core import progress as terminal
from lib.core.errors import DiskFullError
from lib.core.interrupt import Interrupted, requested, signal_name, stop_requests
from lib.core.space import reporting_full_disk
from lib.data.layout import PROJECT_ROOT
from lib.report import IncompleteReport, ReportError, completeness


# The kernel runs over local TCP; with CurveZMQ keys provisioned by the kernel manager (the project's kernelspec
# declares support) its traffic is encrypted and ipykernel does not warn about plain-text transport.
KERNEL_CONFIG = Config({"KernelManager": {"transport_encryption": "auto"}}) if zmq.has("curve") else Config()


# A fresh kernel costs seconds (start-up, then importing torch and lib), which is most of a re-render when every
# result is cached: a report runs its notebooks one after another in one kernel, and `clean_slate` gives each an
# empty namespace and execution counter, as a new kernel would; imported modules stay loaded.
CLEAN_SLATE = "get_ipython().run_line_magic('reset', '-f'); get_ipython().execution_count = 1"


# The report shows figures inline whatever backend the environment names (MPLBACKEND=Agg is common on servers):
# ipykernel keeps a backend set in its environment, so the report's kernel gets the inline one.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def report_kernel():
    """A python3 kernel started in PROJECT_ROOT with this process's environment and the inline matplotlib
    backend; shut down on exit."""
    manager = KernelManager(kernel_name="python3", config=KERNEL_CONFIG)
    manager.start_kernel(cwd=str(PROJECT_ROOT), env={**os.environ, "MPLBACKEND": INLINE_BACKEND})
    try:
        yield manager
    finally:
        manager.shutdown_kernel(now=True)


def clean_slate(manager, timeout=60):
    """Empty the namespace of the kernel of `manager` and restart its execution counter at 1."""
    client = manager.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        reply = client.execute_interactive(CLEAN_SLATE, store_history=False, timeout=timeout)
        if reply["content"]["status"] != "ok":
            raise ReportError(f"could not reset the report's kernel: {reply['content'].get('evalue')}")
    finally:
        client.stop_channels()


def execute(notebook, output, parameters, manager):
    """Execute one notebook with papermill into `output`, in the kernel of `manager` after a `clean_slate`.

    A failing cell, an error output or a figure caption without its image (lib.report.completeness) raises
    IncompleteReport naming the notebook and the cell or figure; a signal received meanwhile (`stop_requests`)
    Interrupted, and a full disk (in the kernel or writing `output`) DiskFullError."""
    clean_slate(manager)
    try:
        with reporting_full_disk("the executed notebook", output):
            papermill.execute_notebook(str(notebook), str(output), parameters=parameters, progress_bar=False,
                                       kernel_name="python3", km=manager)
    except papermill.PapermillExecutionError as error:
        if requested():
            raise stopped(requested(), notebook, error.evalue or f"stopped in cell {error.exec_count}") from None
        if error.ename == "DiskFullError":
            raise DiskFullError(error.evalue) from None
        raise IncompleteReport(f"notebook {notebook.name} failed in cell {error.exec_count} with {error.ename}: "
                               f"{error.evalue}. The executed copy with the traceback is {output}; the previous "
                               "report was left as it was.") from error
    completeness.check(nbformat.read(output, as_version=4), notebook.name, output)


def interrupt(manager):
    """Send SIGINT to the kernel of `manager` (started in a session of its own, so a terminal's Ctrl-C does not
    reach it): a training run there stops at its next step with a checkpoint, other work with KeyboardInterrupt.
    (Plain os.kill: jupyter_client's interrupt_kernel runs an event loop, which a signal handler must not.)"""
    os.kill(manager.provisioner.process.pid, signal.SIGINT)


def stopped(signum, notebook, where):
    """The Interrupted of a report stopped by `signum` in `notebook` (`where`: what the kernel stopped)."""
    return Interrupted(signum, f"{signal_name(signum)} stopped the report in {notebook.name} ({where}); finished runs "
                               "and analyses are kept in the results folder and the previous report as it was: run "
                               "the same command again to continue")


def execute_all(chosen, stage, parameters, progress, label):
    """Execute the notebooks `chosen` into `stage` in one kernel, its runs and epochs shown on stderr when
    `progress`; `label` names the profile. A signal is passed on to the kernel (as SIGINT) and ends the loop with
    Interrupted. Returns (executed notebooks, {notebook: (seconds, runs trained, runs re-used)})."""
    executed, times = [], {}
    with terminal.Monitor(stage / "progress.jsonl", out=sys.stderr if progress else None) as monitor, \
            report_kernel() as kernel, stop_requests(lambda signum: interrupt(kernel)):
        for index, nb in enumerate(chosen, 1):
            if requested():
                raise stopped(requested(), nb, "before it started")
            monitor.section(f"[{index}/{len(chosen)}] {nb.name} ({label})")
            seen, began = len(monitor.events), time.perf_counter()
            execute(nb, stage / nb.name, parameters, kernel)
            monitor.poll()
            runs = [event["event"] for event in monitor.events[seen:]]
            times[nb.name] = (time.perf_counter() - began, runs.count("train"), runs.count("cached"))
            monitor.say(f"  {nb.name} done in {terminal.duration(times[nb.name][0])}")
            executed.append(stage / nb.name)
        if requested():
            raise stopped(requested(), chosen[-1], "after it finished")
    return executed, times

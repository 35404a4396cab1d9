"""The GPU check's hard wall-clock budget: each section has a share of it, and an alarm stops a section at its share.

`Share(seconds, deadline)` is one section's time; while `share.running()`, SIGALRM raises `OutOfTime` at its end
(never past the whole check's deadline). OutOfTime is a BaseException, so that no `except Exception` of the code
a section runs (a training step, torch.compile, a subprocess) can swallow it; the section (or the check) catches it
and says what it did not do. The alarm needs the main thread of a Unix process, as `python -m benchmarks.gpu_check`
runs.
"""
import contextlib
import signal
import time


class OutOfTime(BaseException):
    """A section's share of the budget ran out."""


def _raise_out_of_time(signum, frame):
    raise OutOfTime()


class Share:
    """One section's share: `seconds` from now, cut at `deadline` (time.monotonic() seconds)."""

    def __init__(self, seconds, deadline):
        self.seconds, self.deadline = seconds, deadline
        self.end = min(time.monotonic() + seconds, deadline)
        self.armed = False  # inside running()

    def left(self):
        """Seconds until this share's end (negative once past it)."""
        return self.end - time.monotonic()

    def stopped(self):
        """The note of a piece of work this share's end stopped."""
        return f"stopped: its share of the budget ({self.seconds:.0f} s) ran out"

    @contextlib.contextmanager
    def running(self):
        """Raise OutOfTime in the body when this share ends (at once when it already has)."""
        previous = signal.signal(signal.SIGALRM, _raise_out_of_time)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1e-3))
        self.armed = True
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.armed = False
            signal.signal(signal.SIGALRM, previous)

    @contextlib.contextmanager
    def paused(self):
        """The body runs without this share's alarm and its time is not counted (the share's end moves by it), for
        work with a share of its own; inside `running()` the alarm is set again afterwards."""
        armed = self.armed
        signal.setitimer(signal.ITIMER_REAL, 0) if armed else None
        start = time.monotonic()
        try:
            yield
        finally:
            self.end = min(self.end + time.monotonic() - start, self.deadline)
            if armed:
                signal.signal(signal.SIGALRM, _raise_out_of_time)
                signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1e-3))

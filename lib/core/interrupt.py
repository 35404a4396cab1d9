"""Stopping at a safe point on Ctrl-C (SIGINT) or SIGTERM (a cluster's preemption, a closing laptop).

Inside `stop_requests()` the first SIGINT or SIGTERM is only recorded: the work checks `requested()` at its safe
points (a training run after each optimizer step), keeps what it reached and raises `Interrupted`, which the
command line prints as one line and turns into exit status 128 + the signal (130, 143). The same signal a second
time raises StoppedAtOnce (a KeyboardInterrupt) at once, keeping nothing more. Outside the block signals act as
they did before it.
"""
import contextlib
import signal
import threading


SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received = []  # the signals received inside the current stop_requests block, in order
_on_signal = []  # the current block's callback on its first signal, if any


class Interrupted(KeyboardInterrupt):
    """Work stopped by signal `signum` after keeping what it reached; the message says what is kept and how to
    continue."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum

    @property
    def status(self):
        """The exit status of a process ended by this interruption: 128 + the signal (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


class StoppedAtOnce(Interrupted):
    """A signal that stops the work where it is (the same signal twice inside `stop_requests`, or a SIGTERM outside
    it, `terminate_at_once`), keeping only what it had already saved."""

    def __init__(self, signum):
        super().__init__(signum, f"{signal_name(signum)} stopped it at once: finished runs and the last saved "
                                 "checkpoint are kept; run the same command again to continue")


def signal_name(signum):
    """'SIGINT', 'SIGTERM', ..."""
    return signal.Signals(signum).name


def _record(signum, frame):
    """The handler inside `stop_requests`: record a signal, raise StoppedAtOnce when the same one comes again (a
    SIGTERM after a SIGINT, as torchrun sends its workers after the terminal's Ctrl-C, is only recorded)."""
    if signum in _received:
        raise StoppedAtOnce(signum)
    _received.append(signum)
    if len(_received) == 1 and _on_signal:
        _on_signal[0](signum)


@contextlib.contextmanager
def stop_requests(on_signal=None):
    """Record SIGINT and SIGTERM (`requested`) instead of acting on them, for the block, calling on_signal(signum)
    on the first (e.g. to pass it on to child processes); in a thread other than the main one (where signal
    handlers cannot be set) a do-nothing block. Blocks may nest: the outermost owns the handlers."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is _record:
        yield
        return
    previous = {signum: signal.signal(signum, _record) for signum in SIGNALS}
    _on_signal[:] = [on_signal] if on_signal else []
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()
        _on_signal.clear()


def requested():
    """The first signal received inside `stop_requests` (its number), or 0."""
    return _received[0] if _received else 0


def _stop_at_once(signum, frame):
    raise StoppedAtOnce(signum)


@contextlib.contextmanager
def terminate_at_once():
    """For the block, make SIGTERM stop this process as Ctrl-C does (StoppedAtOnce, outside `stop_requests`), so
    that the command line ends it with one line and status 143 instead of dying silently (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _stop_at_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""One process at a time: an exclusive lock on a file, for work that two processes must not do at once (decoding
a data set into its cache, training one run).

The lock is the operating system's (fcntl.flock): it is released when its holder exits, however it exits, so a
killed process leaves no lock behind. The lock file holds the holder's process id, for the waiting message.
"""
import contextlib
import fcntl
import os
from pathlib import Path
import sys

from lib.core.progress import note


@contextlib.contextmanager
def exclusive(path, waiting):
    """Hold an exclusive lock on the file `path` (created with its folder) for the `with` block.

    A process that finds the lock held prints "`waiting` (process PID holds it)" once, to stderr and to a
    report's terminal (lib.core.progress.note), and waits until the holder is done.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            line = f"{waiting} (process {holder} holds it)"
            print(line, file=sys.stderr, flush=True)
            note(line)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)

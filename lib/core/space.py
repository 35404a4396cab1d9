"""Writing files when the disk may be full: atomic writes (a temporary file, then a rename) whose failure for lack
of space becomes one DiskFullError line naming what was written, where and the space left, with no temporary file
left behind.

torch.save reports a full disk as a RuntimeError ("unexpected pos ..."), not as OSError(ENOSPC): a write that fails
with an OSError or RuntimeError while less than LOW_SPACE bytes are free in its folder is taken as a full disk too.
"""
import contextlib
import errno
import os
from pathlib import Path
import shutil

from lib.core.errors import DiskFullError


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE = 1 << 20  # bytes: a write that fails with less than this free in its folder failed for lack of space


def _existing(folder, until=Path.exists):
    """`folder` (absolute) or its nearest parent for which until(parent) holds."""
    folder = Path(folder).absolute()
    while not until(folder):
        folder = folder.parent
    return folder


def free_bytes(folder):
    """Bytes free to this user in the file system holding `folder` (its nearest existing parent)."""
    return shutil.disk_usage(_existing(folder)).free


def mount_point(folder):
    """The mount point of the file system holding `folder` (its nearest existing parent)."""
    return _existing(folder, lambda path: path.exists() and os.path.ismount(path))


def no_space(error, folder):
    """Whether `error`, raised by a write into `folder`, means that its file system is full: ENOSPC or EDQUOT in the
    error or its causes, or an OSError / RuntimeError while less than LOW_SPACE bytes are free there."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(error, (OSError, RuntimeError)) and free_bytes(folder) < LOW_SPACE


def size_text(count):
    """Bytes as '512 B', '148 KiB', '3.2 MiB' or '12.0 GiB'."""
    if count < 1024:
        return f"{count} B"
    if count < 1024 ** 2:
        return f"{count / 1024:.0f} KiB"
    if count < 1024 ** 3:
        return f"{count / 1024 ** 2:.1f} MiB"
    return f"{count / 1024 ** 3:.1f} GiB"


def disk_full(what, path, freed=0):
    """The DiskFullError of a write of `what` (e.g. 'the checkpoint') to `path` that found no space; `freed`: bytes
    of its half-written file, just removed (an open handle may hold them a moment longer)."""
    path = Path(path).absolute()
    return DiskFullError(
        f"no space left on the disk mounted at {mount_point(path.parent)} writing {what} {path} "
        f"({size_text(free_bytes(path.parent) + freed)} free there without it); finished work is kept and nothing "
        "half-written was left: free some space and run the same command again to continue")


@contextlib.contextmanager
def reporting_full_disk(what, path, partial=None):
    """Turn an error of the block, when it comes from a full disk (`no_space`) at `path`, into `disk_full`; the
    file `partial` (what the block was writing, if any) is removed on any error, after the check."""
    try:
        yield
    except BaseException as error:
        full = isinstance(error, Exception) and no_space(error, Path(path).absolute().parent)
        freed = _remove(partial)
        if full:
            raise disk_full(what, path, freed) from error
        raise


def _remove(partial):
    """Remove the file `partial` (a path or None) if it is there; returns its size in bytes (0 if none)."""
    try:
        size = Path(partial).stat().st_size
    except (TypeError, FileNotFoundError):
        return 0
    Path(partial).unlink(missing_ok=True)
    return size


def atomic_write(path, write, what="the file"):
    """Call write(tmp_path), then rename tmp_path onto path, so a reader never sees half a file.

    On any error (a full disk: DiskFullError naming `what`) the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with reporting_full_disk(what, path, partial=tmp):
        write(tmp)
        os.replace(tmp, path)

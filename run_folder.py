"""The run folder's safety: one process writes a run at a time, every file a user keeps
appears whole or not at all, a full disk is told apart from other write failures, and a
record torn by a kill is read up to its last whole row."""
import contextlib
import csv
import errno
import io
import os
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the README says what that means
    fcntl = None

LOCK_FILE = ".lock"


class FolderBusy(Exception):
    """Another live process holds the run folder's lock; run.py prints it as one line."""


def _holder(fd):
    """The PID the lock's holder wrote, waiting briefly for a holder that has just locked."""
    for _ in range(20):
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid:
            return pid
        time.sleep(0.05)
    return "unknown"


@contextlib.contextmanager
def lock(folder):
    """Holds an exclusive lock on folder/.lock while the block runs, with this process's PID
    written in it. The operating system releases it when the process ends, however it ends,
    so a crash leaves no stale lock. Raises FolderBusy if another process holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusy(
                    f"--out_dir {folder} is in use by process {_holder(fd)} (lock {path}); "
                    "wait for it to finish or stop it, or choose another --out_dir") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (same extension, so Pillow and matplotlib pick
    the format) to write to; it replaces `path` only once the block succeeds, and is removed
    if the block fails, so neither half a file nor its leftovers remain."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def no_space(error):
    """Whether a failed write ran out of disk: an OSError with ENOSPC, or TensorFlow's
    checkpoint and summary errors, which carry only the C library's text."""
    return (getattr(error, "errno", None) == errno.ENOSPC
            or "No space left on device" in str(error))


def read_csv(path):
    """The rows of a CSV of numbers. A last line with no line end is a row torn by a kill or
    a full disk in the middle of its append, and is dropped."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        text = f.read()
    complete = text[:text.rfind("\n") + 1]
    # Counts stay integers, so a resumed run's rewrite keeps "epoch" 1, not 1.0.
    return [{k: int(v) if v.isdigit() else float(v) for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(complete))]

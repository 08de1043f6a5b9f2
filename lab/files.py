"""Files written so that nothing earlier is ever lost, and the error every script reports as one line.

Bad input (a flag, a file, a checkpoint, data) and faults of the machine (a full disk, a read-only folder)
end a script with one line `error: ...` on stderr and exit status 2, never a traceback.
"""
import hashlib
import os


class UserError(Exception):
    """Bad input a user can fix, or a fault of the machine; a script prints it as one `error:` line and exits 2."""


class DataError(Exception):
    """A missing, truncated or corrupted data file (the built-in datasets' or a user's images); the message names
    the file and the fix. Scripts report it like a UserError."""


def writable_dir(path):
    """Create path if needed and check that files can be written there."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create the folder ({e.strerror})") from None
    if not os.path.isdir(path):
        raise UserError(f"{path}: exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{path}: folder is not writable")
    return path


def write_atomically(path, content):
    """Write content (bytes or text) next to path and rename it over path.

    A crash, a full disk or a read-only folder mid-write leaves the previous file whole and no temporary
    file behind; the failure is a UserError naming the file.
    """
    tmp_path = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp_path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp_path, path)
    except OSError as e:
        raise UserError(f"{path}: cannot write it ({e.strerror or e}); any previous version is unchanged") from None
    finally:
        remove_quietly(tmp_path)


def remove_quietly(path):
    try:
        os.remove(path)
    except OSError:  # not there (the usual case), or the folder refuses: nothing more we can do
        pass


def os_error_message(error):
    """An error of the operating system (full disk, read-only or missing folder) as `<file>: <why>`."""
    why = error.strerror or str(error)
    return f"{error.filename}: {why}" if error.filename else why


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WriterLock:
    """`with WriterLock(path):` while this process writes path (a checkpoint, say), no other process can.

    The lock is an exclusive flock(2) on <path>.lock, which also holds the writer's PID, start time and command
    for the error message. A second writer gets a UserError naming the first. The kernel drops the lock when
    its process ends, however it ends (a crash, kill -9), so a lock can never go stale: an interrupted run can
    always be resumed. The file is removed when the block ends.
    """

    def __init__(self, path):
        self.path = f"{path}.lock"
        self.file = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one writer per checkpoint is then the user's to keep
            return self
        import sys
        import time
        for _ in range(10):
            try:
                handle = open(self.path, "a+")
            except OSError as e:
                raise UserError(f"{self.path}: cannot create the lock file ({e.strerror or e})") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                pid, _, since = handle.read().strip().partition(" ")  # empty if the holder has not written it yet
                handle.close()
                holder = f"process {pid} (started {since})" if pid else "another process"
                raise UserError(f"{self.path[:-5]}: being written by {holder}; wait for it to finish or stop it, "
                                f"or write elsewhere") from None
            # the previous holder may have removed the file between our open and our lock: then the lock we hold
            # is on a file no one else will open, so start again on the file now at that path
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                handle.close()
                continue
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)[:300]}\n")
                handle.flush()
            except OSError:
                pass  # a full disk: the lock holds all the same, only the message would lack its details
            self.file = handle
            import glob
            for leftover in glob.glob(glob.escape(self.path[:-5]) + ".tmp*"):
                remove_quietly(leftover)  # a killed writer's half-written file: no one else can be writing now
            return self
        raise UserError(f"{self.path}: cannot take the lock (other processes keep taking it)")

    def __exit__(self, *exc):
        if self.file is not None:
            remove_quietly(self.path)  # while still locked: no one can be writing under it
            self.file.close()  # releases the lock
            self.file = None
        return False

    @staticmethod
    def remove_if_stale(path):
        """Remove <path>.lock if no process holds it: the file a writer killed between finishing its checkpoint
        and leaving the block left behind (its lock went with it). A held lock is left alone."""
        lock = WriterLock(path)
        if not os.path.exists(lock.path):
            return
        try:
            with lock:
                pass
        except UserError:
            pass


def strict_json(value):
    """JSON text that every parser accepts: a float that is not finite (NaN, an infinity) becomes null. Where it
    matters, the writer puts the reason beside it (such as nll_skipped); an interval of one seed is null."""
    import json
    import math

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v
    return json.dumps(finite(value), indent=1, allow_nan=False) + "\n"

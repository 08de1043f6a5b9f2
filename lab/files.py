"""Files written so that nothing earlier is ever lost, and the error every script reports as one line.

Bad input (a flag, a file, a checkpoint, data) and faults of the machine (a full disk, a read-only folder)
end a script with one line `error: ...` on stderr and exit status 2, never a traceback.
"""
import hashlib
import os


class UserError(Exception):
    """Bad input a user can fix, or a fault of the machine; a script prints it as one `error:` line and exits 2."""


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

    The lock is the file <path>.lock, created exclusively and holding the writer's PID and command. A second
    writer gets a UserError naming the first; a lock whose process is gone (a crash, kill -9) is stale and is
    taken over, so an interrupted run can always be resumed. The file is removed when the block ends.
    """

    def __init__(self, path):
        self.path = f"{path}.lock"

    def __enter__(self):
        import sys
        import time
        me = f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)[:300]}\n"
        mine = f"{self.path}.{os.getpid()}"
        try:
            try:
                with open(mine, "w") as f:  # a name of this process alone: no one reads it half-written
                    f.write(me)
            except OSError as e:
                raise UserError(f"{self.path}: cannot create the lock file ({e.strerror or e})") from None
            for _ in range(3):
                try:
                    os.link(mine, self.path)  # atomic, and refused if the lock exists: never a half-written lock
                    return self
                except FileExistsError:
                    holder = self._holder()
                    if holder is not None:
                        pid, since_and_command = holder
                        raise UserError(f"{self.path[:-5]}: being written by process {pid} (started "
                                        f"{since_and_command}); wait for it to finish or stop it, or write "
                                        f"elsewhere") from None
                    remove_quietly(self.path)  # stale: its writer is gone
                except OSError as e:
                    raise UserError(f"{self.path}: cannot create the lock file ({e.strerror})") from None
            raise UserError(f"{self.path}: cannot take the lock (other processes keep taking it)")
        finally:
            remove_quietly(mine)

    def _holder(self):
        """(pid, rest of the line) of a live process holding the lock, or None if the lock is stale or gone."""
        try:
            with open(self.path) as f:
                pid_text, _, rest = f.read().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            return None  # vanished, or half-written by a writer that died at once: stale
        if pid == os.getpid():
            return pid, rest  # this very process holds it already (a nested write): still a second writer
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return pid, rest

    def __exit__(self, *exc):
        remove_quietly(self.path)
        return False

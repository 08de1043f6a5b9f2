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

"""What the command-line scripts share: argument types and the one way they report bad input.

Bad input (a flag, a file, a checkpoint, data) ends a script with one line `error: ...` on
stderr and exit status 2, never a traceback.
"""
import argparse
import math
import os
import sys


class UserError(Exception):
    """Bad input a user can fix; main() prints it as one `error:` line and exits 2."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        exit_with_error(f"{message} (see `python {self.prog} -h`)")


def exit_with_error(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _number(text, kind, ok, requirement):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {requirement}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v > 0, "a positive integer")


def non_negative_int(text):
    return _number(text, int, lambda v: v >= 0, "zero or a positive integer")


def positive_float(text):
    return _number(text, float, lambda v: v > 0, "a positive number")


def non_negative_float(text):
    return _number(text, float, lambda v: v >= 0, "zero or a positive number")


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


def add_checkpoint_arguments(parser):
    """The arguments of every script that reads trained models: which checkpoints, and the data."""
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files (default: every *.pt in --checkpoint_dir)")
    parser.add_argument("--checkpoint_dir", default="checkpoints",
                        help="where to find checkpoints (default: %(default)s)")
    parser.add_argument("--data_dir", default="data", help="folder holding MNIST/raw/ (default: %(default)s)")


def checkpoint_paths(args):
    """The checkpoints named on the command line, else every *.pt in --checkpoint_dir (not its subfolders)."""
    import glob
    paths = args.checkpoints or sorted(glob.glob(os.path.join(args.checkpoint_dir, "*.pt")))
    if not paths:
        raise UserError(f"no checkpoints given and none (*.pt) in {args.checkpoint_dir}/; "
                        f"train some with `python train.py --train_autoencoder --train_vae`")
    return paths


def write_atomically(path, content):
    """Write content (bytes or text) next to path and rename it over path.

    A crash or a full disk mid-write leaves the previous file whole, and no temporary file behind.
    """
    tmp_path = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp_path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)

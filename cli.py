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


DEVICES = ("auto", "cpu", "cuda", "mps")


def add_device_arguments(parser):
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to compute: cuda (NVIDIA GPU), mps (Apple silicon GPU), cpu, or auto: CUDA if "
                             "present, else MPS if present, else the CPU (default: %(default)s)")
    parser.add_argument("--use_cuda", action="store_true", help="the same as --device cuda (the seed's spelling)")


def mps_available():
    import torch
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(args):
    """The torch.device that --device / --use_cuda ask for; one asked for by name that is not here is a UserError."""
    import torch
    name = "cuda" if args.use_cuda else args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{'--use_cuda' if args.use_cuda else '--device cuda'} was given but PyTorch sees no CUDA "
                        f"device; use --device auto or cpu")
    if name == "mps" and not mps_available():
        raise UserError("--device mps was given but PyTorch sees no Apple MPS device; use --device auto or cpu")
    return torch.device(name)


_said = set()


def say_once(message):
    """Print a notice once per process (a fallback a device needs, say), however often it applies."""
    if message not in _said:
        _said.add(message)
        print(message, file=sys.stderr)


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

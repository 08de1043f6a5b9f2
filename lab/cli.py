"""What the command-line scripts share: argument types, --device, which checkpoints to read, and the one
way they report bad input: one line `error: ...` on stderr, exit status 2, never a traceback.
"""
import argparse
import contextlib
import math
import os
import sys

import data
import models
from lab.files import UserError, os_error_message


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


DEVICES = ("auto", "cpu", "cuda", "mps")


def add_device_arguments(parser):
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to compute: cuda (NVIDIA GPU), mps (Apple silicon GPU), cpu, or auto: CUDA if "
                             "present, else MPS if present, else the CPU (default: %(default)s)")
    parser.add_argument("--use_cuda", action="store_true", help="the same as --device cuda (the original project's spelling)")


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


def note(message):
    """A notice about one run (a fallback its device needs, say) on stderr, so that the run's own log holds it:
    said for each run it applies to, with no memory between runs."""
    print(message, file=sys.stderr)


def dataset_argument(text):
    """--dataset: a built-in dataset's name, or the path of a folder of images or an .npz file (read later)."""
    if text in data.DATASETS:
        return text
    if os.path.exists(text):
        return os.path.abspath(text)  # stored in checkpoints: --resume and later scripts may run elsewhere
    raise argparse.ArgumentTypeError(f"{text!r} is neither a built-in dataset ({', '.join(sorted(data.DATASETS))}) "
                                     f"nor an existing folder of images or .npz file")


DATASET_HELP = ("PATH: a folder of images (flat, or one sub-folder per class) or an .npz file with `images` "
                "(N x H x W or N x H x W x C, uint8 or float in [0, 1]) and optional `labels` and `classes`; "
                "named after the folder or file (docs/own-images.md)")


def add_checkpoints_argument(parser):
    """The checkpoints a script that reads trained models is given (its --checkpoint_dir, --data_dir and --dataset
    are TrainConfig's flags, lab/config.py: add_flags)."""
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files (default: every *.pt in --checkpoint_dir)")


def checkpoint_paths(args):
    """The checkpoints named on the command line, else every *.pt in --checkpoint_dir (not its subfolders)."""
    import glob
    paths = args.checkpoints or sorted(glob.glob(os.path.join(args.checkpoint_dir, "*.pt")))
    if not paths:
        raise UserError(f"no checkpoints given and none (*.pt) in {args.checkpoint_dir}/; "
                        f"train some with `python train.py --train_autoencoder --train_vae`")
    return paths




def dataset_prefix(dataset):
    return "" if dataset == "mnist" else f"{dataset}_"


FIGURE_SUFFIX = {"autoencoder": "auto", "vae": "vae"}  # the original project's names for the two default models


def output_name(checkpoint_path, dataset="mnist"):
    """auto / vae / <stem> for MNIST checkpoints; fashion-mnist_auto, ... for other datasets' (figure and table names)."""
    stem = os.path.splitext(os.path.basename(checkpoint_path))[0]
    prefix = dataset_prefix(dataset)
    if prefix and stem.startswith(prefix):
        stem = stem[len(prefix):]
    return prefix + FIGURE_SUFFIX.get(stem, stem)


def output_names(checkpoint_paths, dataset_of):
    """{path: output_name} for several checkpoints, none shared: where two have the same name (one file name in
    two folders, like the study's seeds), each gets its folder's name in front, so that no report column or
    figure of one overwrites the other's. dataset_of(path) gives each checkpoint's dataset."""
    names = {path: output_name(path, dataset_of(path)) for path in checkpoint_paths}
    shared = {name for name in names.values() if list(names.values()).count(name) > 1}
    names = {path: (f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}_{name}" if name in shared else name)
             for path, name in names.items()}
    if len(set(names.values())) < len(names):
        raise UserError("two checkpoints given would share one name in the outputs (the same file name in "
                        "folders of the same name); rename one")
    return names


def load_selected_checkpoints(args, device="cpu"):
    """{path: model} for the checkpoints named, else those of --dataset in --checkpoint_dir (all checked first)."""
    loaded = {path: models.load_checkpoint(path, map_location=device) for path in checkpoint_paths(args)}
    if not args.checkpoints:
        name = data.dataset_key(args.dataset)
        loaded = {path: model for path, model in loaded.items() if model.dataset == name}
        if not loaded:
            raise UserError(f"no {name} checkpoints in {args.checkpoint_dir}/; train some with "
                            f"`python train.py --train_autoencoder --train_vae --dataset {args.dataset}`")
    return loaded


@contextlib.contextmanager
def errors_as_one_line():
    """Bad input and faults of the machine end the script as one `error:` line and exit status 2."""
    try:
        yield
    except (UserError, data.DataError, models.CheckpointError) as e:
        exit_with_error(str(e))
    except OSError as e:  # the machine's fault, not the user's: a full disk, a read-only or vanished folder
        exit_with_error(os_error_message(e))


def command_line(script, argv=None):
    """The command as a user would type it again, for the reports' "made by" lines."""
    import shlex
    return f"python {script}" + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

"""MNIST as tensors: find the IDX files, verify them, split them, and serve batches.

The four IDX files ship gzip'd in data/MNIST/raw/ so that nothing is downloaded at run time.
Their .gz bytes are not the ones torchvision's download list expects, so we unpack them
ourselves, check each unpacked file against its known SHA-256, and only then let
torchvision.datasets.MNIST read the folder (it reads unpacked files without asking for .gz).

Each split is kept as one float tensor on the training device; a training step takes a
batch by indexing it with a shuffled slice of indices. That removes the per-sample
PIL -> ToTensor -> collate path of the usual DataLoader, which dominates the cost of
training a model this small.
"""
import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass

import torch

# SHA-256 of the *unpacked* canonical files: they hold whichever way the files arrived
# (bundled .gz, a torchvision download, a copy from elsewhere).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

VALIDATION_SIZE = 5000  # taken from the 60 000 training images; the 10 000 test images stay held out
SPLIT_SEED = 0  # fixed, so every run (and every later script) sees the same validation images


class DataError(Exception):
    """A missing, truncated or corrupted data file; the message names the file and the fix."""


@dataclass
class Split:
    images: torch.Tensor  # N x 1 x 28 x 28, float32 in [0, 1]
    labels: torch.Tensor  # N, int64

    def __len__(self):
        return len(self.labels)

    def batches(self, batch_size, shuffle=False, generator=None):
        """Yield (images, labels) batches; the last batch may be smaller."""
        n = len(self)
        if shuffle:
            # the permutation is drawn on the CPU (cheap: one int64 vector per epoch) so that
            # the same seed gives the same batches on every device
            order = torch.randperm(n, generator=generator).to(self.images.device)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                yield self.images[idx], self.labels[idx]
        else:
            for start in range(0, n, batch_size):
                yield self.images[start:start + batch_size], self.labels[start:start + batch_size]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack_and_verify(raw_dir, name, expected_sha256):
    """Make raw_dir/name an unpacked file with the expected SHA-256, from name.gz if needed."""
    path = os.path.join(raw_dir, name)
    gz_path = path + ".gz"
    if os.path.exists(path) and _sha256(path) == expected_sha256:
        return
    if not os.path.exists(gz_path):
        if os.path.exists(path):
            raise DataError(f"{path}: SHA-256 does not match the canonical MNIST file; "
                            f"delete it and restore {name}.gz (git checkout -- {gz_path})")
        raise DataError(f"{gz_path}: missing; restore it with `git checkout -- {gz_path}` "
                        f"or delete the folder {raw_dir} to download MNIST through torchvision")
    tmp_path = path + ".tmp"
    try:
        with gzip.open(gz_path, "rb") as src, open(tmp_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError when truncated
        _remove_quietly(tmp_path)
        raise DataError(f"{gz_path}: cannot be unpacked ({e}); the file is truncated or corrupted, "
                        f"restore it with `git checkout -- {gz_path}`") from None
    if _sha256(tmp_path) != expected_sha256:
        _remove_quietly(tmp_path)
        raise DataError(f"{gz_path}: unpacks to a file whose SHA-256 does not match the canonical "
                        f"MNIST file; restore it with `git checkout -- {gz_path}`")
    os.replace(tmp_path, path)


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def prepare_mnist(data_dir):
    """Ensure data_dir/MNIST/raw holds the four verified, unpacked IDX files.

    Bundled (or previously downloaded) files are verified and unpacked. When the folder holds
    none of them, torchvision downloads MNIST (the only path that needs the internet).
    """
    raw_dir = os.path.join(data_dir, "MNIST", "raw")
    present = [n for n in MNIST_SHA256
               if os.path.exists(os.path.join(raw_dir, n)) or os.path.exists(os.path.join(raw_dir, n + ".gz"))]
    if not present:
        import torchvision
        try:
            torchvision.datasets.MNIST(data_dir, train=True, download=True)
            torchvision.datasets.MNIST(data_dir, train=False, download=True)
        except Exception as e:  # network errors come in many types; the user needs one message
            raise DataError(f"{raw_dir}: MNIST is not there and could not be downloaded ({e}); "
                            f"copy the four *-ubyte.gz files into that folder") from None
    for name, expected in MNIST_SHA256.items():
        _unpack_and_verify(raw_dir, name, expected)


def load_mnist(data_dir="data", device="cpu", max_train_images=None):
    """Return {"train", "val", "test"} Splits of MNIST on `device`.

    train: 55 000 images and val: 5 000 images, a fixed random split of the training file;
    test: the 10 000 test images. max_train_images keeps only the first n training images
    (for quick runs and tests); validation and test stay whole.
    """
    import torchvision  # imported here: only loading data needs it
    prepare_mnist(data_dir)
    try:
        train_file = torchvision.datasets.MNIST(data_dir, train=True, download=False)
        test_file = torchvision.datasets.MNIST(data_dir, train=False, download=False)
    except (RuntimeError, ValueError, OSError) as e:
        raise DataError(f"{os.path.join(data_dir, 'MNIST', 'raw')}: torchvision could not read MNIST ({e})") from None

    def as_split(images_uint8, labels):
        images = images_uint8.to(device=device).unsqueeze(1).float().div_(255)
        return Split(images, labels.to(device=device, dtype=torch.int64))

    order = torch.randperm(len(train_file.targets), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    if max_train_images is not None:
        train_idx = train_idx[:max_train_images]
    return {
        "train": as_split(train_file.data[train_idx], train_file.targets[train_idx]),
        "val": as_split(train_file.data[val_idx], train_file.targets[val_idx]),
        "test": as_split(test_file.data, test_file.targets),
    }

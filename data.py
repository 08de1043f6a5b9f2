"""MNIST (and Fashion-MNIST, and a user's own images) as tensors: find the files, verify them, split them,
serve batches.

MNIST's four IDX files ship gzip'd in data/MNIST/raw/ so that nothing is downloaded at run time.
Fashion-MNIST comes from Debian's package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/),
else from data/FashionMNIST/raw/, else from torchvision's download.
Their .gz bytes are not the ones torchvision's download list expects, so we unpack them
ourselves, in memory, check each unpacked file against its known SHA-256 and parse the IDX
format directly: nothing is written into data/, so a read-only checkout works.

Each split is kept as one float tensor on the training device; a training step takes a
batch by indexing it with a shuffled slice of indices. That removes the per-sample
PIL -> ToTensor -> collate path of the usual DataLoader, which dominates the cost of
training a model this small.

A user's own images (`--dataset PATH`: a folder of image files, flat or with one sub-folder per class, or an
.npz file) are read and checked by own_images.py, and split here into train / validation / test by a fixed
seed (split_image_set).
"""
import functools
import gzip
import hashlib
import os
from dataclasses import dataclass

import torch

import own_images
from lab.files import DataError

# SHA-256 of the *unpacked* canonical files: they hold whichever way the files arrived
# (bundled .gz, a torchvision download, a copy from elsewhere).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# SHA-256 of the unpacked Fashion-MNIST files as Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
# ships them (60 000 + 10 000 images, as in Xiao et al. 2017); its .gz bytes differ from torchvision's list.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass
class DatasetInfo:
    folder: str  # torchvision's folder name under the data root, and its dataset class
    sha256: dict
    classes: list
    system_dir: str = None  # where a system package installs the .gz files, looked at first
    how_to_get: str = ""
    noun: str = "digit"  # what a class is, for figure legends
    binarized: bool = False  # pixels sampled to 0 or 1 (see load_dataset)
    judge: str = None  # whose classifier judges generated images (lab/judge.py); default: this dataset's own


DATASETS = {
    "mnist": DatasetInfo("MNIST", MNIST_SHA256, [str(d) for d in range(10)],
                         how_to_get="restore the bundled files with `git checkout -- data/MNIST/raw`"),
    "fashion-mnist": DatasetInfo(
        "FashionMNIST", FASHION_MNIST_SHA256,
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        system_dir="/usr/share/datasets/fashion-mnist",
        how_to_get="install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copy the four "
                   "*-ubyte.gz files of Fashion-MNIST into {raw_dir}", noun="class"),
    # The same files with each grey level taken as the probability of a black-or-white pixel, the form in
    # which papers report likelihoods on MNIST (Salakhutdinov & Murray 2008; Burda et al. 2016, IWAE).
    "binarized-mnist": DatasetInfo("MNIST", MNIST_SHA256, [str(d) for d in range(10)],
                                   how_to_get="restore the bundled files with `git checkout -- data/MNIST/raw`",
                                   binarized=True, judge="mnist"),
}

VALIDATION_SIZE = 5000  # taken from the 60 000 training images; the 10 000 test images stay held out
SPLIT_SEED = 0  # fixed, so every run (and every later script) sees the same validation images
BINARIZE_SEED = 0  # fixed, so every model of binarized-mnist is scored on the same 0/1 test images


# ---- a user's own images (own_images.py reads them) ----

HELD_OUT_SHARE = 0.1  # of a user's images, for validation and again for test (MNIST holds out 5 000 and 10 000 of 70 000)
MIN_IMAGES = 20  # a held-out tenth of them is 2 images: a test split to draw a line between


def dataset_name(path):
    """The name a user's dataset at path goes by (checkpoints, figures, reports): the folder's or file's stem,
    never a built-in dataset's."""
    stem = os.path.splitext(os.path.basename(os.path.abspath(path)))[0]
    if stem.casefold() in {name.casefold() for name in DATASETS}:  # case-blind file systems would mix their files
        raise DataError(f"{path}: its name {stem!r} is a built-in dataset's; rename the folder or file")
    return own_images.dataset_name(path)


def dataset_key(dataset):
    """The name of a dataset given as a built-in name or a PATH to a user's images."""
    return dataset if dataset in DATASETS else dataset_name(dataset)


def user_image_set(path, image_size=None):
    """The user's images at path (own_images.read_image_set), read once while their files stay as they are."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such dataset (the built-in ones: {', '.join(sorted(DATASETS))}) "
                        f"nor folder or file")
    dataset_name(path)
    return _read_unless_changed(os.path.abspath(path), tuple(image_size) if image_size else None,
                                _files_signature(path))


def _files_signature(path):
    """What changes when the files read at path do (own_images.image_files): each one's name, size, inode and
    modification and change times (the change time cannot be set back, so a copy keeping the old modification
    time is seen too)."""
    try:
        return tuple((f, s.st_size, s.st_ino, s.st_mtime_ns, s.st_ctime_ns)
                     for f in own_images.image_files(path) for s in [os.stat(f)])
    except OSError as e:
        raise DataError(f"{path}: cannot read its files ({e.strerror or e}: {e.filename})") from None


@functools.lru_cache(maxsize=4)
def _read_unless_changed(path, image_size, signature):
    # a study's runs and a script's steps ask for the same images many times; the signature in the key makes an
    # edited, added or removed file a new read, so nothing stale is ever served
    return own_images.read_image_set(path, image_size)


PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))


def stored_path(path):
    """path as a checkpoint keeps it: relative to the project when inside it (a committed checkpoint then finds its
    images in any clone), else absolute."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, PROJECT_DIR]) == PROJECT_DIR
    return os.path.relpath(path, PROJECT_DIR) if inside else path


def data_source(dataset, image_size=None):
    """What a checkpoint records about a user's dataset, so that later scripts find and check the same images:
    None for the built-in ones."""
    if dataset in DATASETS:
        return None
    image_set = user_image_set(dataset, image_size)
    return {"path": stored_path(dataset), "sha256": image_set.sha256, "classes": image_set.classes,
            "image_size": list(image_size) if image_size else None, "split_seed": SPLIT_SEED}


def dataset_of_model(model, dataset=None):
    """The --dataset value that loads the images model was trained on: its built-in name; for a user's images the
    PATH given (dataset), else where the checkpoint says they were. The shapes must agree."""
    if model.dataset in DATASETS:
        return model.dataset
    source = getattr(model, "data_source", None) or {}
    path = dataset if dataset not in (None, *DATASETS) else source.get("path")
    if path is not None and dataset in (None, *DATASETS):
        path = os.path.join(PROJECT_DIR, path)  # as stored_path kept it (an absolute path stays as it is)
    if path is None or not os.path.exists(path):
        raise DataError(f"the model was trained on {model.dataset!r}, whose images were at {source.get('path')} and "
                        f"are not there now; give their folder or .npz with --dataset PATH")
    image_set = user_image_set(path, source.get("image_size"))
    if tuple(image_set.images.shape[1:]) != tuple(model.image_shape):
        c, h, w = image_set.images.shape[1:]
        mc, mh, mw = model.image_shape
        raise DataError(f"{path}: images of {c} x {h} x {w} (channels x height x width), but the model was trained on "
                        f"{mc} x {mh} x {mw} images ({model.dataset!r})")
    if source.get("sha256") not in (None, image_set.sha256):
        # other files would be split otherwise: test images could be ones the model trained on
        raise DataError(f"{path}: not the images the model was trained on (their SHA-256 differs from the one its "
                        f"checkpoint recorded); give the same images, or retrain on these")
    return path


def load_dataset_of(model, data_dir="data", device="cpu", dataset=None):
    """load_dataset of the images model was trained on (dataset_of_model), resized as they were for training."""
    image_size = (getattr(model, "data_source", None) or {}).get("image_size")
    return load_dataset(dataset_of_model(model, dataset), data_dir, device, image_size=image_size)


def class_names_of(dataset, image_size=None):
    """The class names of a dataset given by name or PATH (None for unlabelled images)."""
    if dataset in DATASETS:
        return DATASETS[dataset].classes
    return user_image_set(dataset, image_size).classes


def class_names(model):
    """The class names of the data model was trained on, or None for unlabelled images."""
    if model.dataset in DATASETS:
        return DATASETS[model.dataset].classes
    return (getattr(model, "data_source", None) or {}).get("classes")


def split_image_set(image_set, device="cpu", seed=SPLIT_SEED, max_train_images=None):
    """{"train", "val", "test"} Splits of a user's images: a share HELD_OUT_SHARE each for validation and
    test, drawn by seed, the rest for training. Unlabelled images get label -1."""
    n = len(image_set.images)
    if n < MIN_IMAGES:
        raise DataError(f"{image_set.name}: {n} images; at least {MIN_IMAGES} are needed (to train, validate and test)")
    held_out = max(1, round(HELD_OUT_SHARE * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = {"test": order[:held_out], "val": order[held_out:2 * held_out], "train": order[2 * held_out:]}
    if max_train_images is not None:
        parts["train"] = parts["train"][:max_train_images]
    labels = image_set.labels if image_set.labels is not None else torch.full((n,), -1, dtype=torch.int64)
    return {name: Split(image_set.images[idx].to(device), labels[idx].to(device)) for name, idx in parts.items()}


@dataclass
class Split:
    images: torch.Tensor  # N x C x H x W, float32 in [0, 1] (1 x 28 x 28 for the built-in datasets)
    labels: torch.Tensor  # N, int64 (-1: unlabelled)
    # dynamic binarisation: every batch is a fresh 0/1 sample with `images` as the pixel probabilities
    # (drawn from torch's global generator, so a resumed run draws the same samples)
    binarize_batches: bool = False

    def __len__(self):
        return len(self.labels)

    def batches(self, batch_size, shuffle=False, generator=None):
        """Yield (images, labels) batches; the last batch may be smaller."""
        n = len(self)
        # the permutation is drawn on the CPU (cheap: one int64 vector per epoch) so that
        # the same seed gives the same batches on every device
        order = torch.randperm(n, generator=generator).to(self.images.device) if shuffle else None
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
            images = self.images[idx]
            yield (torch.bernoulli(images) if self.binarize_batches else images), self.labels[idx]

    def sample_images(self, seed=BINARIZE_SEED):
        """All images as a model trained on this split sees them: one fixed 0/1 sample if its batches
        are binarised, else the images themselves."""
        return binarize(self.images, seed) if self.binarize_batches else self.images


def image_grid(images, **make_grid_args):
    """Images B x C x H x W tiled into one C' x H' x W' image: torchvision's make_grid, imported on first use.

    Importing torchvision costs ~2 s (its models pull in torch._dynamo); imported at the top of the scripts,
    every `-h` and every error exit would pay it.
    """
    import torchvision.utils
    return torchvision.utils.make_grid(images, **make_grid_args)


def binarize(images, seed):
    """One fixed 0/1 sample of images, each grey level the probability of a 1; drawn on the CPU so that
    the same seed gives the same pixels on every device."""
    return torch.bernoulli(images.cpu(), generator=torch.Generator().manual_seed(seed)).to(images.device)


def _sha256_of(content):
    return hashlib.sha256(content).hexdigest()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _verified_bytes(raw_dir, name, expected_sha256, gz_dir=None):
    """The unpacked content of one IDX file, checked against its SHA-256: raw_dir/name if it is there and
    intact, else <gz_dir or raw_dir>/name.gz unpacked in memory. Nothing is written, so a read-only
    checkout (a container layer, a shared install) reads its bundled data as it is."""
    path = os.path.join(raw_dir, name)
    gz_path = os.path.join(gz_dir or raw_dir, name + ".gz")
    if os.path.exists(path):
        content = _read(path)
        if _sha256_of(content) == expected_sha256:
            return content
        if not os.path.exists(gz_path):
            raise DataError(f"{path}: SHA-256 does not match the canonical file; "
                            f"delete it and restore {name}.gz (git checkout -- {gz_path})")
    if not os.path.exists(gz_path):
        raise DataError(f"{gz_path}: missing; restore it with `git checkout -- {gz_path}` "
                        f"or delete the folder {raw_dir} to download the dataset through torchvision")
    try:
        content = gzip.decompress(_read(gz_path))
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError when truncated
        raise DataError(f"{gz_path}: cannot be unpacked ({e}); the file is truncated or corrupted, "
                        f"restore it with `git checkout -- {gz_path}`") from None
    if _sha256_of(content) != expected_sha256:
        raise DataError(f"{gz_path}: unpacks to a file whose SHA-256 does not match the canonical "
                        f"file; restore it with `git checkout -- {gz_path}` (or reinstall its package)")
    return content


def _parse_idx(content):
    """An IDX file (LeCun's format: magic with the number of dimensions in its last byte, big-endian sizes,
    then unsigned bytes) as a uint8 tensor."""
    ndim = content[3]
    sizes = [int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(content[4 + 4 * ndim:]), dtype=torch.uint8).view(*sizes)


def read_dataset_files(data_dir, dataset="mnist"):
    """{file name: verified unpacked bytes} of the dataset's four IDX files.

    Where they come from, in order: a system package's folder (Fashion-MNIST: Debian's), the unpacked or .gz
    files in data_dir/<folder>/raw (MNIST: bundled with the repository), and last torchvision's download
    (the only path that needs the internet, and the only one that writes).
    """
    info = DATASETS[dataset]
    raw_dir = os.path.join(data_dir, info.folder, "raw")
    if info.system_dir and all(os.path.exists(os.path.join(info.system_dir, n + ".gz")) for n in info.sha256):
        return {name: _verified_bytes(raw_dir, name, expected, gz_dir=info.system_dir)
                for name, expected in info.sha256.items()}
    present = [n for n in info.sha256
               if os.path.exists(os.path.join(raw_dir, n)) or os.path.exists(os.path.join(raw_dir, n + ".gz"))]
    if not present:
        import torchvision
        try:
            for train in (True, False):
                getattr(torchvision.datasets, info.folder)(data_dir, train=train, download=True)
        except Exception as e:  # network errors come in many types; the user needs one message
            raise DataError(f"{dataset} is not in {raw_dir}"
                            + (f" nor in {info.system_dir}" if info.system_dir else "")
                            + f" and could not be downloaded ({str(e).splitlines()[0][:120]}); "
                            + info.how_to_get.format(raw_dir=raw_dir)) from None
    return {name: _verified_bytes(raw_dir, name, expected) for name, expected in info.sha256.items()}


def prepare_dataset(data_dir, dataset="mnist"):
    """Write verified unpacked copies of the four files into data_dir/<folder>/raw, for code that hands the
    folder to torchvision.datasets (benchmarks/speed.py's tutorial-style loop). The scripts do not need this."""
    from lab.files import write_atomically
    raw_dir = os.path.join(data_dir, DATASETS[dataset].folder, "raw")
    os.makedirs(raw_dir, exist_ok=True)
    for name, content in read_dataset_files(data_dir, dataset).items():
        path = os.path.join(raw_dir, name)
        if not (os.path.exists(path) and _sha256_of(_read(path)) == DATASETS[dataset].sha256[name]):
            write_atomically(path, content)


def load_dataset(dataset="mnist", data_dir="data", device="cpu", max_train_images=None, image_size=None):
    """Return {"train", "val", "test"} Splits of the dataset on `device`.

    dataset: a built-in name, or the PATH of a user's images (own_images.read_image_set; image_size (H, W)
    resizes them).

    train: 55 000 images and val: 5 000 images, a fixed random split of the training file;
    test: the 10 000 test images. max_train_images keeps only the first n training images
    (for quick runs and tests); validation and test stay whole.
    binarized-mnist: the training split keeps the grey levels and binarises each batch afresh (dynamic
    binarisation); validation and test are binarised once, with a fixed seed, so that every model is
    scored on the same 0/1 images.
    """
    if dataset not in DATASETS:
        return split_image_set(user_image_set(dataset, image_size), device, max_train_images=max_train_images)
    files = {name: _parse_idx(content) for name, content in read_dataset_files(data_dir, dataset).items()}
    train_images, train_labels = files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"]

    def as_split(images_uint8, labels):
        images = images_uint8.to(device=device).unsqueeze(1).float().div_(255)
        return Split(images, labels.to(device=device, dtype=torch.int64))

    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    if max_train_images is not None:
        train_idx = train_idx[:max_train_images]
    splits = {
        "train": as_split(train_images[train_idx], train_labels[train_idx]),
        "val": as_split(train_images[val_idx], train_labels[val_idx]),
        "test": as_split(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"]),
    }
    if DATASETS[dataset].binarized:
        splits["train"].binarize_batches = True
        for name, seed in (("val", BINARIZE_SEED), ("test", BINARIZE_SEED + 1)):
            splits[name] = Split(binarize(splits[name].images, seed), splits[name].labels)
    return splits

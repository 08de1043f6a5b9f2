"""A user's own images (`--dataset PATH`): a folder of image files, flat or with one sub-folder per class, or an
.npz file with `images` and optional `labels` and `classes`. They are read whole, checked, and given a
SHA-256 of their content (read_image_set); data.py splits them like the built-in datasets and serves them.
"""
import hashlib
import io
import os
from dataclasses import dataclass

import torch

from lab.files import DataError


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


@dataclass
class ImageSet:
    """A user's dataset, read whole: images N x C x H x W, float32 in [0, 1]; labels N int64 and class names,
    or None for unlabelled images; sha256 of what was read (content_sha256)."""
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    sha256: str


def dataset_name(path):
    """The name a dataset at path goes by (checkpoints, figures, reports): the folder's or file's stem
    (data.dataset_name also refuses the built-in datasets' names)."""
    stem = os.path.splitext(os.path.basename(os.path.abspath(path)))[0]
    if not stem or stem.startswith("."):
        raise DataError(f"{path}: its name {stem!r} would make hidden files; rename the folder or file")
    return stem


def read_image_set(path, image_size=None):
    """The images at path (a folder, or an .npz file), all of one size: their own, or image_size (H, W) to
    which each is resized."""
    if os.path.isdir(path):
        return _read_image_folder(path, image_size)
    if os.path.isfile(path):
        if not path.endswith(".npz"):
            raise DataError(f"{path}: not a folder of images nor an .npz file")
        return _read_npz(path, image_size)
    raise DataError(f"{path}: no such folder or .npz file")


def image_files(path):
    """The files read_image_set reads at path: the .npz itself, or a folder's image files (flat, or those of its
    class sub-folders)."""
    if not os.path.isdir(path):
        return [path]
    sub_folders = sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n))
                         and _image_files(os.path.join(path, n)))
    return _image_files(path) or [f for name in sub_folders for f in _image_files(os.path.join(path, name))]


def _image_files(folder):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, n)))


def _read_image_folder(folder, image_size):
    """Flat: every image file in folder, unlabelled. With sub-folders: one class per sub-folder holding images,
    named after it (sorted), the images in it labelled so."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError
    sub_folders = sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))
                         and _image_files(os.path.join(folder, n)))
    flat = _image_files(folder)
    if flat and sub_folders:
        raise DataError(f"{folder}: holds image files and sub-folders of images; put every image in a class "
                        f"sub-folder, or all of them in the folder itself (unlabelled)")
    files = flat or [f for name in sub_folders for f in _image_files(os.path.join(folder, name))]
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or in its sub-folders")
    pictures = []
    for path in files:
        content = _read_bytes(path)
        try:
            with Image.open(io.BytesIO(content)) as picture:
                picture.load()  # decodes the whole file: a truncated one fails here, not later
                pictures.append(ImageOps.exif_transpose(picture))  # as a viewer shows it (camera orientation)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot be read as an image ({str(e).splitlines()[0][:120] or type(e).__name__})") from None
    colour = any(not _is_grey_mode(p.mode) or (p.mode == "P" and _palette_is_colour(p)) for p in pictures)
    if image_size is None:
        sizes = {p.size for p in pictures}
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = sorted(sizes)[:2]
            raise DataError(f"{folder}: images of {len(sizes)} sizes (e.g. {h1}x{w1} and {h2}x{w2}); "
                            f"resize them to one with --image_size H W")
    arrays = [_as_array(p, "RGB" if colour else "L", image_size) for p in pictures]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
    labels, classes = None, None
    if sub_folders:
        classes = sub_folders
        labels = torch.tensor([sub_folders.index(os.path.basename(os.path.dirname(f))) for f in files])
    images = images.contiguous()
    return ImageSet(dataset_name(folder), images, labels, classes, content_sha256(images, labels, classes))


def _is_grey_mode(mode):
    return mode in ("1", "L", "LA", "I", "F", "P") or mode.startswith("I;16")


def content_sha256(images, labels, classes):
    """SHA-256 of a dataset's pixels (as read and resized), labels and class names: the same images give the same
    sum whichever files carry them (PNG or .npz, compressed or not, re-exported)."""
    digest = hashlib.sha256(repr((tuple(images.shape), classes)).encode())
    digest.update(images.numpy().tobytes())
    if labels is not None:
        digest.update(labels.numpy().tobytes())
    return digest.hexdigest()


def _palette_is_colour(picture):
    rgb = picture.convert("RGB")
    r, g, b = rgb.split()
    return r.tobytes() != g.tobytes() or g.tobytes() != b.tobytes()


def _as_array(picture, mode, image_size):
    """picture as an H x W x C uint8 array in mode (L or RGB), resized to image_size (H, W) if given."""
    import numpy as np
    from PIL import Image
    if picture.mode == "I" or picture.mode.startswith("I;16"):  # 16-bit greys: 0-65535 onto 0-255
        values = np.asarray(picture, dtype=np.float64)
        picture = Image.fromarray((values.clip(0, 65535) * (255 / 65535)).round().astype(np.uint8))
    elif picture.mode == "F":  # float greys: taken as 0-1
        values = np.asarray(picture, dtype=np.float64)
        picture = Image.fromarray((values.clip(0, 1) * 255).round().astype(np.uint8))
    picture = picture.convert(mode)
    if image_size is not None and picture.size != (image_size[1], image_size[0]):
        picture = picture.resize((image_size[1], image_size[0]), Image.Resampling.LANCZOS)
    array = np.asarray(picture, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _read_npz(path, image_size):
    """images: N x H x W or N x H x W x C (C = 1 or 3), uint8 0-255 or float 0-1; labels: N non-negative ints;
    classes: their names (default: the label numbers)."""
    import numpy as np
    import zipfile
    content = _read_bytes(path)
    try:
        arrays = np.load(io.BytesIO(content), allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not named arrays")
        with arrays:
            found = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot be read as an .npz file ({str(e).splitlines()[0][:120]})") from None
    if "images" not in found:
        raise DataError(f"{path}: has no array `images` (it has: {', '.join(sorted(found)) or 'none'})")
    images = found["images"]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape:
        raise DataError(f"{path}: `images` has shape {images.shape}; expected N x H x W or N x H x W x C with C = 1 or 3")
    if images.dtype == np.uint8:
        tensor = torch.from_numpy(images.copy()).float().div_(255)
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise DataError(f"{path}: `images` holds NaN or infinite values")
        if images.min() < 0 or images.max() > 1:
            raise DataError(f"{path}: float `images` must lie in [0, 1]; these reach "
                            f"[{images.min():.4g}, {images.max():.4g}] (uint8 images may use 0-255)")
        tensor = torch.from_numpy(images.astype(np.float32))
    else:
        raise DataError(f"{path}: `images` is {images.dtype}; expected uint8 (0-255) or float (0-1)")
    tensor = tensor.permute(0, 3, 1, 2).contiguous()
    if image_size is not None and tuple(tensor.shape[2:]) != tuple(image_size):
        tensor = torch.nn.functional.interpolate(tensor, size=tuple(image_size), mode="bilinear",
                                                 antialias=True, align_corners=False).clamp_(0, 1)
    labels, classes = None, None
    if "labels" in found:
        raw = found["labels"]
        if raw.ndim != 1 or len(raw) != len(tensor) or not np.issubdtype(raw.dtype, np.integer) or (raw < 0).any():
            raise DataError(f"{path}: `labels` must be {len(tensor)} non-negative integers, one per image "
                            f"(it has shape {raw.shape}, {raw.dtype})")
        labels = torch.from_numpy(raw.astype(np.int64))
        classes = [str(c) for c in range(int(raw.max()) + 1)]
        if "classes" in found:
            classes = [str(c) for c in found["classes"].reshape(-1).tolist()]
            if len(classes) <= int(raw.max()):
                raise DataError(f"{path}: `classes` names {len(classes)} classes but `labels` go up to {int(raw.max())}")
    elif "classes" in found:
        raise DataError(f"{path}: has `classes` but no `labels` to go with them")
    return ImageSet(dataset_name(path), tensor, labels, classes, content_sha256(tensor, labels, classes))


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None

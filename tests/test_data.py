import gzip
import os
import subprocess
import sys

import pytest
import torch

import data

from conftest import ROOT


def test_splits_have_the_documented_sizes_and_pixel_range(mnist):
    assert [len(mnist[k]) for k in ("train", "val", "test")] == [55000, 5000, 10000]
    for split in mnist.values():
        assert split.images.shape[1:] == (1, 28, 28)
        assert split.images.dtype == torch.float32
        assert split.images.min() == 0 and split.images.max() == 1
        assert set(split.labels.unique().tolist()) == set(range(10))


def test_validation_split_is_fixed_and_disjoint_from_training(mnist):
    again = data.load_dataset("mnist", os.path.join(ROOT, "data"), max_train_images=100)
    assert torch.equal(again["val"].images, mnist["val"].images)
    assert torch.equal(again["train"].images, mnist["train"].images[:100])
    # no validation image appears in the training split (whole images compared byte for byte)
    as_bytes = lambda images: [row.tobytes() for row in (images.flatten(1) * 255).round().byte().numpy()]  # noqa: E731
    train_images = set(as_bytes(mnist["train"].images))
    assert not any(image in train_images for image in as_bytes(mnist["val"].images))


def test_shuffled_batches_visit_every_image_once_per_epoch():
    split = data.Split(torch.arange(10.).view(10, 1, 1, 1), torch.arange(10))
    seen = torch.cat([labels for _, labels in split.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == list(range(10))
    assert seen.tolist() != list(range(10))


def test_binarized_mnist_samples_training_batches_afresh_and_scores_on_fixed_binary_images(mnist):
    binarized = data.load_dataset("binarized-mnist", os.path.join(ROOT, "data"), max_train_images=2000)
    again = data.load_dataset("binarized-mnist", os.path.join(ROOT, "data"), max_train_images=100)
    for name in ("val", "test"):
        images = binarized[name].images
        assert set(images.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(images, again[name].images)  # the same 0/1 images every time
        assert torch.equal(binarized[name].labels, mnist[name].labels)
        # each grey level is the probability of a white pixel: the means agree to sampling noise
        assert images.mean().item() == pytest.approx(mnist[name].images.mean().item(), abs=0.002)
    assert not torch.equal(binarized["val"].images[:100], binarized["test"].images[:100])
    # training batches: 0/1, drawn afresh on every pass over the same grey images
    first, second = (next(binarized["train"].batches(2000))[0] for _ in range(2))
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    assert torch.equal(binarized["train"].images, mnist["train"].images[:2000])
    assert (first - mnist["train"].images[:2000]).mean().abs() < 0.002
    # where a fixed binary version of the training images is needed (evaluate.py's kNN), it is fixed
    assert torch.equal(binarized["train"].sample_images(), binarized["train"].sample_images())
    assert torch.equal(mnist["train"].sample_images(), mnist["train"].images)


def test_loading_writes_nothing_so_a_read_only_checkout_works(mnist_copy, mnist, monkeypatch):
    import builtins
    import errno
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    splits = data.load_dataset("mnist", str(mnist_copy))
    assert torch.equal(splits["test"].images, mnist["test"].images)
    assert sorted(os.listdir(mnist_copy / "MNIST" / "raw")) == sorted(n + ".gz" for n in data.MNIST_SHA256)


def test_unpacked_copies_are_used_when_intact_and_the_gz_when_damaged(mnist_copy, mnist):
    data.prepare_dataset(str(mnist_copy), "mnist")  # what the tutorial-style benchmark needs: unpacked files
    raw = mnist_copy / "MNIST" / "raw"
    for name in data.MNIST_SHA256:
        assert data._sha256_of((raw / name).read_bytes()) == data.MNIST_SHA256[name]
    with open(raw / "t10k-labels-idx1-ubyte", "r+b") as f:  # damaged after unpacking
        f.seek(100)
        f.write(b"\xff")
    assert torch.equal(data.load_dataset("mnist", str(mnist_copy))["test"].labels, mnist["test"].labels)
    os.remove(raw / "t10k-labels-idx1-ubyte.gz")  # damaged, and nothing to restore it from
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte: SHA-256 does not match"):
        data.load_dataset("mnist", str(mnist_copy))


def test_truncated_gz_is_reported_by_name(mnist_copy):
    gz = mnist_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte.gz"):
        data.load_dataset("mnist", str(mnist_copy))


def test_gz_with_wrong_content_is_reported_by_name(mnist_copy):
    gz = mnist_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(gz.read_bytes()))
    content[50] ^= 1
    gz.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz.*SHA-256"):
        data.load_dataset("mnist", str(mnist_copy))


def test_one_missing_file_is_reported_by_name(mnist_copy):
    os.remove(mnist_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: missing"):
        data.load_dataset("mnist", str(mnist_copy))


@pytest.mark.slow
def test_train_reports_corrupted_data_as_one_error_line(mnist_copy, tmp_path):
    gz = mnist_copy / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    gz.write_bytes(b"this is not gzip")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--train_vae", "--data_dir", str(mnist_copy),
         "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "train-images-idx3-ubyte.gz" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "ck").glob("*.pt"))

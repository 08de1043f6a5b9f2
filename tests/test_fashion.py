"""Fashion-MNIST through the same scripts, tested on a tiny synthetic IDX set (CI needs no package)."""
import gzip
import hashlib
import struct
import urllib.error

import pytest
import torch

import data
import explore_latent_space as explore
import models
import train
from lab import figures

N_TRAIN, N_TEST = data.VALIDATION_SIZE + 300, 100


def idx_images(images):
    return struct.pack(">IIII", 2051, len(images), 28, 28) + images.numpy().tobytes()


def idx_labels(labels):
    return struct.pack(">II", 2049, len(labels)) + labels.numpy().tobytes()


@pytest.fixture
def synthetic_fashion(tmp_path, monkeypatch):
    """A fake system folder holding four gzip'd IDX files, registered as Fashion-MNIST's source."""
    generator = torch.Generator().manual_seed(0)
    system_dir = tmp_path / "usr-share-datasets-fashion-mnist"
    system_dir.mkdir()
    files = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = (torch.arange(n) % 10).to(torch.uint8)
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for c in range(10):  # each class a bright bar in its own rows, plus noise
            images[labels == c, 2 * c + 4:2 * c + 8, 4:24] = 200
        images = (images.int() + torch.randint(0, 40, images.shape, generator=generator)).clamp(max=255).to(torch.uint8)
        files[f"{split}-images-idx3-ubyte"] = idx_images(images)
        files[f"{split}-labels-idx1-ubyte"] = idx_labels(labels)
    for name, content in files.items():
        (system_dir / f"{name}.gz").write_bytes(gzip.compress(content))
    info = data.DATASETS["fashion-mnist"]
    monkeypatch.setattr(info, "system_dir", str(system_dir))
    monkeypatch.setattr(info, "sha256", {name: hashlib.sha256(c).hexdigest() for name, c in files.items()})
    return tmp_path / "data"


def test_fashion_mnist_is_taken_from_the_system_folder_first(synthetic_fashion):
    splits = data.load_dataset("fashion-mnist", str(synthetic_fashion))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [300, data.VALIDATION_SIZE, N_TEST]
    assert not (synthetic_fashion / "FashionMNIST").exists()  # read where it is installed; nothing copied
    assert not (synthetic_fashion / "MNIST").exists()


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setattr(data.DATASETS["fashion-mnist"], "system_dir", str(tmp_path / "not-installed"))

    def offline(self):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", offline)
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist", str(tmp_path / "data"))


@pytest.mark.slow
def test_fashion_runs_never_collide_with_mnist_runs_and_figures_use_class_names(synthetic_fashion, tmp_path):
    ck = tmp_path / "ck"
    train.main(["--train_autoencoder", "--train_vae", "--dataset", "fashion-mnist", "--epochs", "1",
                "--hidden_dims", "32", "--data_dir", str(synthetic_fashion), "--checkpoint_dir", str(ck),
                "--logdir", str(tmp_path / "logs")])
    assert sorted(p.name for p in ck.glob("*.pt")) == ["fashion-mnist_autoencoder.pt", "fashion-mnist_vae.pt"]
    vae = models.load_checkpoint(ck / "fashion-mnist_vae.pt")
    assert vae.dataset == "fashion-mnist"

    out = tmp_path / "figures"
    explore.main(["--checkpoint_dir", str(ck), "--dataset", "fashion-mnist", "-o", str(out),
                  "--data_dir", str(synthetic_fashion)])
    names = {p.name for p in out.iterdir()}
    assert {"latent_dist_fashion-mnist_auto.png", "latent_dist_fashion-mnist_vae.png",
            "compare_latent_space_fashion-mnist.png"} <= names
    assert not any(n.startswith("latent_dist_auto") for n in names)
    test = data.load_dataset("fashion-mnist", str(synthetic_fashion))["test"]
    fig = figures.latent_dist_figure(vae, test.images, test.labels, data.DATASETS["fashion-mnist"].classes, "class")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:2] == ["T-shirt/top", "Trouser"]


def test_explore_with_the_default_dataset_ignores_fashion_checkpoints(synthetic_fashion, tmp_path):
    models.save_checkpoint(tmp_path / "fashion-mnist_vae.pt", models.VAE(hidden_dims=[8]), dataset="fashion-mnist")
    with pytest.raises(SystemExit) as stop:
        explore.main(["--checkpoint_dir", str(tmp_path), "-o", str(tmp_path / "out")])
    assert stop.value.code == 2

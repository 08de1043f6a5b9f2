import os
import shutil
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data  # noqa: E402

DATA_DIR = os.path.join(ROOT, "data")


@pytest.fixture(scope="session")
def mnist():
    """The real bundled MNIST splits (loaded once per test session)."""
    return data.load_mnist(DATA_DIR)


@pytest.fixture
def mnist_copy(tmp_path):
    """A private copy of the bundled .gz files, for tests that damage them."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_SHA256:
        shutil.copy(os.path.join(DATA_DIR, "MNIST", "raw", name + ".gz"), raw)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

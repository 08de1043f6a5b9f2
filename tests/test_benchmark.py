"""The benchmark's arithmetic: the FLOPs it divides by are the FLOPs a training step really does."""
import os
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import models  # noqa: E402
import speed  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("kind, hidden_dims", [("autoencoder", [256, 256, 256]), ("vae", [200, 200])])
def test_flop_count_matches_what_autograd_runs(kind, hidden_dims):
    model = models.build_model(kind, hidden_dims=hidden_dims)
    images = torch.rand(32, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model.loss(images)["total"].backward()
    assert counter.get_total_flops() == speed.training_flops_per_image(model) * 32

from argparse import Namespace

import pytest
import torch

import evaluate
import explore_latent_space as explore
import train
from lab import cli, files, training


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(cli, "mps_available", lambda: mps)
    assert cli.resolve_device(Namespace(device="auto", use_cuda=False)) == torch.device(expected)
    assert cli.resolve_device(Namespace(device="cpu", use_cuda=False)) == torch.device("cpu")
    if cuda:  # --use_cuda wins over --device
        assert cli.resolve_device(Namespace(device="mps", use_cuda=True)) == torch.device("cuda")
    else:
        with pytest.raises(files.UserError, match="no CUDA device"):
            cli.resolve_device(Namespace(device="auto", use_cuda=True))


@pytest.mark.parametrize("main", [train.main, explore.main, evaluate.main])
@pytest.mark.parametrize("flags", [["--device", "cuda"], ["--device", "mps"], ["--use_cuda"]])
def test_a_device_that_is_not_here_is_one_error_line(main, flags, capsys, tmp_path):
    name = "cuda" if "cuda" in " ".join(flags) else "mps"
    if (name == "cuda" and torch.cuda.is_available()) or (name == "mps" and cli.mps_available()):
        pytest.skip(f"this machine has {name}")
    argv = flags + (["--train_vae", "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")]
                    if main is train.main else ["-o", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert f"no {'CUDA' if name == 'cuda' else 'Apple MPS'} device" in err
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


def test_without_fused_adam_training_falls_back_and_says_so_in_each_runs_log(monkeypatch, capsys):
    real_adam = torch.optim.Adam

    def adam_without_fused(params, lr, fused=None):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real_adam(params, lr=lr)
    monkeypatch.setattr(torch.optim, "Adam", adam_without_fused)
    model = torch.nn.Linear(2, 2)
    optimizers = [training.make_optimizer(model, 1e-3) for _ in range(3)]
    assert all(isinstance(o, real_adam) and not o.defaults.get("fused") for o in optimizers)
    # each run says it (its log is then complete), with no memory of earlier runs in the process
    assert capsys.readouterr().err.count("fused Adam is not available on cpu") == 3

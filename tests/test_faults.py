"""Faults of the machine, not of the user: a full disk, a read-only file system.

The suite runs as root, whom chmod does not stop, so the faults are made real another way: temporary files
(every write goes through one) are opened on /dev/full, which fails each write with ENOSPC, or os.replace
raises EROFS as on a read-only mount.
"""
import builtins
import errno
import json
import os

import pytest
import torch

import evaluate
import explore_latent_space as explore
import models
import train

from conftest import DATA_DIR

real_open = builtins.open


@pytest.fixture
def full_disk(monkeypatch):
    """Every temporary file (<target>.tmp<pid>) is written to /dev/full: "No space left on device"."""
    def open_on_full_disk(file, mode="r", *args, **kwargs):
        if ".tmp" in os.fspath(file) and any(c in mode for c in "wa"):
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", open_on_full_disk)


@pytest.fixture
def read_only_renames(monkeypatch):
    def refuse(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(dst))
    monkeypatch.setattr(os, "replace", refuse)


def run_main(main, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    return stop.value.code, err


def leftovers(folder):
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def tiny_training_argv(tmp_path):
    return ["--train_vae", "--hidden_dims", "8", "--epochs", "1", "--max_train_images", "300",
            "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs"), "--data_dir", DATA_DIR]


def test_a_full_disk_while_training_keeps_the_previous_checkpoint(tmp_path, capsys, request):
    train.main(tiny_training_argv(tmp_path))
    before = (tmp_path / "ck" / "vae.pt").read_bytes()
    capsys.readouterr()
    request.getfixturevalue("full_disk")  # from here on, the disk is full
    code, err = run_main(train.main, tiny_training_argv(tmp_path) + ["--seed", "1"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "No space left on device" in err
    # the earlier run was moved aside before the new one started, whole and loadable
    (kept,) = (tmp_path / "ck" / "previous").glob("vae-*.pt")
    assert kept.read_bytes() == before
    models.load_checkpoint(kept)
    assert not leftovers(tmp_path)


def test_a_full_disk_while_drawing_keeps_the_previous_figures(tmp_path, capsys, request):
    models.save_checkpoint(tmp_path / "vae.pt", models.VAE(hidden_dims=[8]).eval())
    out = tmp_path / "figures"
    out.mkdir()
    (out / "outputs_vae.png").write_bytes(b"the previous figure")
    request.getfixturevalue("full_disk")
    code, err = run_main(explore.main, [str(tmp_path / "vae.pt"), "-o", str(out), "--num_points", "200",
                                        "--data_dir", DATA_DIR], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "No space left on device" in err and "previous version is unchanged" in err
    assert (out / "outputs_vae.png").read_bytes() == b"the previous figure"
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_a_read_only_output_folder_fails_evaluate_with_one_line_and_keeps_the_old_report(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    models.save_checkpoint(tmp_path / "autoencoder.pt", models.AutoEncoder(hidden_dims=[8]).eval())
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}')
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(
        OSError(errno.EROFS, "Read-only file system", str(dst))))
    code, err = run_main(evaluate.main, [str(tmp_path / "autoencoder.pt"), "-o", str(out), "--num_samples", "100",
                                         "--data_dir", DATA_DIR], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "Read-only file system" in err and "metrics" in err
    assert json.loads((out / "metrics.json").read_text()) == {"old": True}
    assert not leftovers(tmp_path)


def test_saving_a_checkpoint_on_a_read_only_file_system_is_a_checkpoint_error(tmp_path, read_only_renames):
    (tmp_path / "vae.pt").write_bytes(b"previous")
    with pytest.raises(models.CheckpointError, match="vae.pt: cannot write the checkpoint .Read-only file system"):
        models.save_checkpoint(tmp_path / "vae.pt", models.VAE(hidden_dims=[8]))
    assert (tmp_path / "vae.pt").read_bytes() == b"previous"
    assert not leftovers(tmp_path)

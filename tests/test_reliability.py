"""Nothing lost, no code run from files, clear errors: the failure behaviour of README.md."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

import models
import train

from lab import files, training
from conftest import DATA_DIR, ROOT, lock_held_elsewhere, run_script

QUICK = ["--hidden_dims", "64", "--max_train_images", "2000", "--batch_size", "100", "--data_dir", DATA_DIR]


def weights(path):
    return torch.load(path, weights_only=True)["model_state"]


def quick_train(folder, *extra):
    train.main([*QUICK, "--checkpoint_dir", str(folder / "ck"), "--logdir", str(folder / "logs"), *extra])


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, monkeypatch):
    quick_train(tmp_path / "whole", "--train_vae", "--epochs", "3")

    real_evaluate = training.measures.evaluate_split
    calls = []

    def interrupt_in_epoch_two(model, split, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the validation pass of epoch 2: epoch 1 is saved, epoch 2 is not
            raise KeyboardInterrupt
        return real_evaluate(model, split, *a, **k)

    monkeypatch.setattr(training.measures, "evaluate_split", interrupt_in_epoch_two)
    with pytest.raises(SystemExit) as stop:
        quick_train(tmp_path / "split", "--train_vae", "--epochs", "3")
    assert stop.value.code == 130
    assert torch.load(tmp_path / "split" / "ck" / "vae.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(training.measures, "evaluate_split", real_evaluate)
    # flags that --resume ignores (the checkpoint's settings win)
    quick_train(tmp_path / "split", "--train_vae", "--epochs", "7", "--lr", "0.5", "--resume")

    whole, resumed = weights(tmp_path / "whole" / "ck" / "vae.pt"), weights(tmp_path / "split" / "ck" / "vae.pt")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert torch.load(tmp_path / "split" / "ck" / "vae.pt", weights_only=True)["epoch"] == 3


def test_resume_of_a_finished_or_missing_run_is_a_clear_error(tmp_path, capsys):
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1")
    capsys.readouterr()
    for model, reason in (("--train_autoencoder", "this run is finished"), ("--train_vae", "no such checkpoint")):
        with pytest.raises(SystemExit) as stop:
            quick_train(tmp_path, model, "--resume")
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith("error: ") and reason in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_keeps_the_last_completed_epoch_and_exits_without_a_traceback(tmp_path):
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), *QUICK, "--train_vae", "--epochs", "500",
         "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "ck" / "vae.pt"
    deadline = time.time() + 60
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "no epoch finished within a minute"
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "Traceback" not in stderr and "terminated: the last completed epoch" in stderr and "--resume" in stderr
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] >= 1 and not saved["completed"]
    assert models.load_checkpoint(checkpoint).kind == "vae"
    assert not [p for p in (tmp_path / "ck").iterdir() if ".tmp" in p.name]


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1")
    good = weights(tmp_path / "ck" / "autoencoder.pt")
    result = run_script("train.py", *QUICK, "--train_autoencoder", "--lr", "1e30", "--epochs", "2",
                        "--checkpoint_dir", tmp_path / "ck", "--logdir", tmp_path / "logs")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "--lr" in result.stderr
    # the failed run wrote no checkpoint; the earlier run's file is where it was
    kept = weights(tmp_path / "ck" / "autoencoder.pt")
    assert all(torch.equal(good[k], kept[k]) for k in good)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's remark on the hostile file's protocol
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format_version": 1, "kind": "vae", "model_args": {}, "model_state": RunsCode()}, f)
    torch.save({"format_version": 1, "kind": "vae", "model_args": {}, "model_state": RunsCode()}, tmp_path / "evil2.pt")
    for path in (evil, tmp_path / "evil2.pt"):
        with pytest.raises(models.CheckpointError, match=str(path)) as error:
            models.load_checkpoint(path)
        assert "weights_only=False" not in str(error.value)  # never advise the unsafe load
    assert "could run code" in str(error.value)
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


def good_checkpoint(**changes):
    model = models.VAE(hidden_dims=[8])
    checkpoint = {"format_version": models.CHECKPOINT_FORMAT_VERSION, "kind": "vae",
                  "model_args": model.model_args, "model_state": model.state_dict()}
    checkpoint.update(changes)
    return checkpoint


@pytest.mark.parametrize("change, message", [
    (dict(kind="transformer"), "unknown model kind"),
    (dict(format_version=models.CHECKPOINT_FORMAT_VERSION + 1), "newer than this code reads"),
    (dict(model_args={"hidden_dims": [9], "latent_dim": 2, "activation": "gelu", "beta": 1.0}), "do not fit"),
    (dict(model_args={"bogus": 1}), "do not fit"),
    (dict(model_state={}), "do not fit"),
])
def test_damaged_or_foreign_checkpoints_name_the_file_and_the_reason(tmp_path, change, message):
    path = tmp_path / "m.pt"
    torch.save(good_checkpoint(**change), path)
    with pytest.raises(models.CheckpointError, match=message) as error:
        models.load_checkpoint(path)
    assert str(error.value).startswith(f"{path}: ")


def test_missing_key_and_truncated_file(tmp_path):
    checkpoint = good_checkpoint()
    del checkpoint["model_args"]
    torch.save(checkpoint, tmp_path / "missing.pt")
    with pytest.raises(models.CheckpointError, match="missing model_args"):
        models.load_checkpoint(tmp_path / "missing.pt")
    torch.save(good_checkpoint(), tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:300])
    with pytest.raises(models.CheckpointError, match="not a readable checkpoint"):
        models.load_checkpoint(tmp_path / "cut.pt")


def as_if_saved_on_a_gpu(path, gpu_path):
    """Copy a checkpoint, rewriting each tensor's recorded device from cpu to cuda:0 -- the only
    difference between this file and one torch.save wrote from a GPU -- so CPU-only CI can test it."""
    import zipfile
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(gpu_path, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            content = src.read(name)
            if name.endswith("/data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in content
                content = content.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(name, content)


def test_checkpoints_carry_a_format_version_and_a_gpu_saved_one_loads_onto_the_cpu(tmp_path):
    torch.manual_seed(0)
    model = models.VAE(hidden_dims=[8]).eval()
    models.save_checkpoint(tmp_path / "m.pt", model)
    assert torch.load(tmp_path / "m.pt", weights_only=True)["format_version"] == models.CHECKPOINT_FORMAT_VERSION
    as_if_saved_on_a_gpu(tmp_path / "m.pt", tmp_path / "gpu.pt")
    if not torch.cuda.is_available():  # the file really does point at a GPU: a plain load fails here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded = models.load_checkpoint(tmp_path / "gpu.pt")  # map_location="cpu" by default
    assert next(loaded.parameters()).device.type == "cpu"
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.encode(x), model.encode(x))


def test_a_failed_write_leaves_the_previous_checkpoint_valid(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    models.save_checkpoint(path, models.AutoEncoder(hidden_dims=[8]))
    before = path.read_bytes()

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models.torch, "save", disk_full)
    with pytest.raises(models.CheckpointError, match="m.pt: cannot write the checkpoint .No space left on device"):
        models.save_checkpoint(path, models.AutoEncoder(hidden_dims=[8]))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("flag, value", [("--latent_dim", "0"), ("--epochs", "-3"), ("--lr", "nan"),
                                          ("--batch_size", "1.5"), ("--beta", "x"),
                                          ("--max_grad_norm", "-1")])
def test_bad_numbers_write_nothing(tmp_path, flag, value):
    result = run_script("train.py", "--train_vae", flag, value, "--checkpoint_dir", tmp_path / "ck",
                        "--logdir", tmp_path / "logs")
    assert result.returncode == 2 and result.stderr.startswith(f"error: argument {flag}")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_checkpoint_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_script("train.py", "--train_vae", "--checkpoint_dir", blocker / "ck", "--logdir", tmp_path / "logs")
    assert result.returncode == 2 and result.stderr.startswith(f"error: {blocker / 'ck'}")


def test_a_failed_figure_or_metrics_write_leaves_the_previous_file_valid(tmp_path, monkeypatch):
    import builtins
    path = tmp_path / "metrics.json"
    files.write_atomically(path, '{"old": 1}\n')
    real_open = builtins.open

    def open_then_fill_the_disk(file, mode="r", *a, **k):
        handle = real_open(file, mode, *a, **k)
        if "w" in mode:
            handle.write = lambda content: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        return handle

    monkeypatch.setattr(builtins, "open", open_then_fill_the_disk)
    with pytest.raises(files.UserError, match="metrics.json: cannot write it .No space left on device"):
        files.write_atomically(path, b"new bytes of a png")
    monkeypatch.setattr(builtins, "open", real_open)
    assert path.read_text() == '{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_second_writer_of_a_checkpoint_in_use_gets_one_error_line_naming_the_first(tmp_path):
    """Two trainings on one checkpoint path: the later one stops at once and the file stays the first's."""
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1")
    before = weights(tmp_path / "ck" / "autoencoder.pt")
    with lock_held_elsewhere(tmp_path / "ck" / "autoencoder.pt") as other:
        result = run_script("train.py", *QUICK, "--train_autoencoder", "--epochs", "1", "--seed", "1",
                            "--checkpoint_dir", tmp_path / "ck", "--logdir", tmp_path / "logs")
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"error: {tmp_path / 'ck' / 'autoencoder.pt'}: being written by process {other.pid}")
        after = weights(tmp_path / "ck" / "autoencoder.pt")
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert not (tmp_path / "ck" / "previous").exists()
    # its writer gone (killed, like a crash), the lock went with it: the next run trains and removes the lock file
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1", "--seed", "1")
    assert not (tmp_path / "ck" / "autoencoder.pt.lock").exists()
    assert len(list((tmp_path / "ck" / "previous").glob("autoencoder-*.pt"))) == 1


def test_a_lock_file_a_killed_writer_left_is_removed_and_a_held_one_is_not(tmp_path):
    """A worker killed after finishing its checkpoint but before leaving the lock's block leaves <path>.lock
    behind; the next study that finds the run finished clears it. A lock some process holds stays."""
    path = tmp_path / "vae.pt"
    (tmp_path / "vae.pt.lock").write_text("12345 2026-11-30 00:00:00 python study.py\n")  # no process holds it
    files.WriterLock.remove_if_stale(str(path))
    assert not (tmp_path / "vae.pt.lock").exists()
    files.WriterLock.remove_if_stale(str(path))  # no lock file: nothing to do
    with lock_held_elsewhere(path):
        files.WriterLock.remove_if_stale(str(path))
        assert (tmp_path / "vae.pt.lock").exists()

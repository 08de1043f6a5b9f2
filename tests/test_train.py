
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import data
import models
import train

from lab import config, measures, training
from conftest import DATA_DIR, run_script

QUICK = ["--hidden_dims", "64", "--max_train_images", "3000", "--batch_size", "100", "--data_dir", DATA_DIR]


def run_cli(*args, cwd=None):
    return run_script("train.py", *args, cwd=cwd)


def quick_train(tmp_path, *extra):
    train.main([*QUICK, "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs"), *extra])


def test_help_explains_every_option():
    result = run_cli("-h")
    assert result.returncode == 0
    for flag in ["--train_autoencoder", "--train_vae", "--epochs", "--use_cuda", "--batch_size", "--lr",
                 "--hidden_dims", "--latent_dim", "--beta", "--seed", "--checkpoint_dir", "--logdir",
                 "--data_dir", "--threads", "--schedule", "--activation", "--max_train_images", "--compile",
                 "--max_grad_norm", "--patience"]:
        assert flag in result.stdout


def test_davidson_et_al_s_parameterisation_and_initial_weights_are_a_recipe_stored_whole(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(models, "tensorflow_init", lambda m, real=models.tensorflow_init: called.append("tf") or real(m))
    monkeypatch.setattr(models.AutoEncoder, "init_output_bias", lambda m, image: called.append("mean image"))
    quick_train(tmp_path, "--train_vae", "--train_autoencoder", "--epochs", "1", "--max_train_images", "500",
                "--posterior_scale", "softplus", "--init", "tensorflow")
    assert called == ["tf", "tf"]  # the AutoEncoder's and the VAE's weights; neither starts at the mean image
    # the AutoEncoder has no posterior: its run is the one a file without the flag reads as (logvar)
    assert config.from_checkpoint(models.read_checkpoint(tmp_path / "ck" / "autoencoder.pt")).posterior_scale == "logvar"
    assert models.read_checkpoint(tmp_path / "ck" / "autoencoder.pt")["config"]["posterior_scale"] == "logvar"
    checkpoint = models.read_checkpoint(tmp_path / "ck" / "vae.pt")
    assert checkpoint["model_args"]["posterior_scale"] == "softplus"
    assert (checkpoint["config"]["posterior_scale"], checkpoint["config"]["init"]) == ("softplus", "tensorflow")
    run = config.from_checkpoint(checkpoint)
    assert (run.posterior_scale, run.init) == ("softplus", "tensorflow")
    assert config.identity(run) != config.identity(config.replace(run, init="pytorch"))
    assert models.load_checkpoint(tmp_path / "ck" / "vae.pt").posterior_scale == "softplus"


@pytest.mark.parametrize("args, message", [
    ([], "nothing to train"),
    (["--train_vae", "--epochs", "0"], "--epochs"),
    (["--train_vae", "--lr", "abc"], "--lr"),
    (["--train_vae", "--beta", "-1"], "--beta"),
    (["--train_vae", "--batch_size", "-5"], "--batch_size"),
    (["--train_vae", "--no_such_flag"], "no_such_flag"),
    (["--train_vae", "--patience", "5"], "--schedule constant"),  # the cosine schedule cannot stop early
    (["--train_vae", "--patience", "0", "--schedule", "constant"], "--patience"),
])
def test_bad_flags_exit_2_with_one_error_line(tmp_path, monkeypatch, capsys, args, message):
    # in-process (main exits as the script does); the test below checks a real process's exit once
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train.main([*args, "--checkpoint_dir", str(tmp_path / "ck")])
    stderr = capsys.readouterr().err
    assert stop.value.code == 2
    assert stderr.startswith("error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ck").exists()


def test_use_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli("--train_vae", "--use_cuda", "--checkpoint_dir", str(tmp_path / "ck"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "CUDA" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "ck").exists()


def test_a_short_run_lowers_validation_loss_and_writes_checkpoints(tmp_path, mnist):
    torch.manual_seed(0)
    untrained = models.VAE(hidden_dims=[64])
    untrained.init_output_bias(mnist["train"].images[:3000].mean(0))
    before = measures.evaluate_split(untrained, mnist["val"])["loss_total"]
    quick_train(tmp_path, "--train_autoencoder", "--train_vae", "--beta", "1", "4", "--epochs", "2")
    ck = tmp_path / "ck"
    assert sorted(p.name for p in ck.glob("*.pt")) == ["autoencoder.pt", "vae.pt", "vae_beta4.pt"]
    vae = models.load_checkpoint(ck / "vae.pt")
    after = measures.evaluate_split(vae, mnist["val"])["loss_total"]
    assert after < before - 20
    saved = torch.load(ck / "vae.pt", weights_only=True)
    assert saved["epoch"] == 2 and saved["config"]["epochs"] == 2
    assert saved["val_metrics"]["loss_total"] == pytest.approx(after, rel=1e-5)
    assert set(saved["test_metrics"]) >= {"loss_total", "loss_recon", "loss_kl", "pixel_acc_0.5", "pixel_acc_0.6"}
    assert saved["completed"] and "optimizer_state" not in saved  # a finished run has nothing to resume
    assert models.load_checkpoint(ck / "vae_beta4.pt").beta == 4


def test_event_files_hold_the_expected_tags(tmp_path):
    quick_train(tmp_path, "--train_vae", "--epochs", "2")
    (run_dir,) = (tmp_path / "logs").iterdir()
    assert run_dir.name.startswith("vae-")
    events = EventAccumulator(str(run_dir)).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ["train/objective", "train/recon", "train/kl", "train/neg_elbo", "train/lr",
                "val/objective", "val/recon", "val/kl", "val/neg_elbo", "val/pixel_acc_0.5", "val/pixel_acc_0.6",
                "final/test_objective", "final/test_neg_elbo"]:
        assert tag in scalars, tag
    assert [e.step for e in events.Scalars("val/objective")] == [1, 2]
    recon, kl, neg_elbo = (events.Scalars(f"val/{t}")[-1].value for t in ("recon", "kl", "neg_elbo"))
    assert neg_elbo == pytest.approx(recon + kl, rel=1e-6)
    assert {"val/inputs_and_reconstructions", "samples/decoded_from_N(0,I)",
            "latent/codes_of_validation_images"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("latent/codes_of_validation_images")] == [1, 2]
    assert [e.step for e in events.Images("latent/codes_on_fixed_axes")] == [1, 2]  # replayed once it finished
    spread = events.Scalars("latent/code_norm_p99")
    assert [e.step for e in spread] == [1, 2] and all(0 < e.value < 100 for e in spread)
    hparams = b"".join(events.PluginTagToContent("hparams").values())  # the HPARAMS tab's protobufs
    assert b"batch_size" in hparams and b"max_grad_norm" in hparams and b"final/test_objective" in hparams


def test_runs_never_share_a_log_folder_and_previous_checkpoints_are_kept(tmp_path):
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1")
    first = torch.load(tmp_path / "ck" / "autoencoder.pt", weights_only=True)["model_state"]
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1", "--seed", "1")
    assert len(list((tmp_path / "logs").iterdir())) == 2
    (kept,) = (tmp_path / "ck" / "previous").glob("autoencoder-*.pt")
    kept_state = torch.load(kept, weights_only=True)["model_state"]
    assert all(torch.equal(first[k], kept_state[k]) for k in first)


def test_same_seed_gives_the_same_weights(tmp_path):
    quick_train(tmp_path / "a", "--train_vae", "--epochs", "1")
    quick_train(tmp_path / "b", "--train_vae", "--epochs", "1")
    a = torch.load(tmp_path / "a" / "ck" / "vae.pt", weights_only=True)["model_state"]
    b = torch.load(tmp_path / "b" / "ck" / "vae.pt", weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_bf16_steps_train_a_model_as_good_within_a_nat_and_say_so_in_the_checkpoint(tmp_path):
    quick_train(tmp_path / "a", "--train_vae", "--epochs", "1", "--max_train_images", "1000")
    quick_train(tmp_path / "b", "--train_vae", "--epochs", "1", "--max_train_images", "1000", "--precision", "bf16")
    a = torch.load(tmp_path / "a" / "ck" / "vae.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "ck" / "vae.pt", weights_only=True)
    assert a["config"]["precision"] == "fp32" and b["config"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in b["model_state"].values())  # the weights stay float32
    assert not all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])  # bf16 ran
    assert abs(a["test_metrics"]["loss_total"] - b["test_metrics"]["loss_total"]) < 1.0


def test_checkpoint_of_an_unfinished_run_holds_what_resuming_needs(tmp_path, monkeypatch):
    real_evaluate = training.measures.evaluate_split

    def evaluate_then_stop_before_the_test_set(model, split, *a, **k):
        if len(split) == 10000:
            raise KeyboardInterrupt  # as if Ctrl-C came right after the last epoch
        return real_evaluate(model, split, *a, **k)

    monkeypatch.setattr(training.measures, "evaluate_split", evaluate_then_stop_before_the_test_set)
    with pytest.raises(SystemExit) as stop:
        quick_train(tmp_path, "--train_vae", "--epochs", "1")
    assert stop.value.code == 130
    saved = torch.load(tmp_path / "ck" / "vae.pt", weights_only=True)
    assert saved["epoch"] == 1 and not saved["completed"]
    assert saved["optimizer_state"]["state"] and "scheduler_state" in saved
    assert models.load_checkpoint(tmp_path / "ck" / "vae.pt").kind == "vae"


@pytest.mark.slow
def test_compile_trains_the_same_model_as_eager(tmp_path):
    # the AutoEncoder draws no random numbers, so compiled and eager steps must agree up to float rounding
    tiny = ["--train_autoencoder", "--epochs", "1", "--hidden_dims", "16", "--max_train_images", "512",
            "--batch_size", "256", "--data_dir", DATA_DIR]
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        train.main([*tiny, *extra, "--checkpoint_dir", str(tmp_path / name), "--logdir", str(tmp_path / "logs")])
    eager = torch.load(tmp_path / "eager" / "autoencoder.pt", weights_only=True)
    compiled = torch.load(tmp_path / "compiled" / "autoencoder.pt", weights_only=True)
    assert compiled["config"]["compile"] and not eager["config"]["compile"]
    assert compiled["model_state"].keys() == eager["model_state"].keys()  # no torch.compile wrapper names
    for k, v in eager["model_state"].items():
        assert torch.allclose(compiled["model_state"][k], v, atol=1e-4), k
    assert compiled["test_metrics"]["loss_total"] == pytest.approx(eager["test_metrics"]["loss_total"], rel=1e-4)
    assert models.load_checkpoint(tmp_path / "compiled" / "autoencoder.pt").kind == "autoencoder"


def test_a_failing_compiler_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def compiled_but_broken(fn, **options):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(long explanation)")
        return run

    monkeypatch.setattr(torch, "compile", compiled_but_broken)
    with pytest.raises(SystemExit) as stop:
        quick_train(tmp_path, "--train_vae", "--epochs", "1", "--compile")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --compile") and "C++ compiler" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "ck").glob("*.pt")) and not list((tmp_path / "logs").glob("*"))


@pytest.mark.slow
def test_binarized_mnist_trains_on_binary_batches_and_validates_on_the_fixed_binary_split(tmp_path, monkeypatch,
                                                                                          binarized_mnist):
    inputs_were_binary = []
    real_loss = models.VAE.loss

    def recording_loss(self, x):
        inputs_were_binary.append(bool(((x == 0) | (x == 1)).all()))
        return real_loss(self, x)

    monkeypatch.setattr(models.VAE, "loss", recording_loss)
    quick_train(tmp_path, "--train_vae", "--epochs", "1", "--dataset", "binarized-mnist")
    assert len(inputs_were_binary) > 30 and all(inputs_were_binary)  # 30 training steps, then validation and test
    monkeypatch.setattr(models.VAE, "loss", real_loss)
    path = tmp_path / "ck" / "binarized-mnist_vae.pt"
    vae = models.load_checkpoint(path)
    assert vae.dataset == "binarized-mnist"
    val = binarized_mnist["val"]
    saved = torch.load(path, weights_only=True)
    assert saved["val_metrics"]["loss_total"] == pytest.approx(measures.evaluate_split(vae, val)["loss_total"], rel=1e-5)


@pytest.mark.slow
def test_gradient_clipping_rescues_a_blown_up_batch_and_changes_nothing_else(tmp_path, monkeypatch):
    def val_loss(folder):
        return torch.load(folder / "ck" / "vae.pt", weights_only=True)["val_metrics"]["loss_total"]

    # this small model's gradient norms stay below 20 (the default limit, 1e4, is for full-size runs, below ~700)
    quick_train(tmp_path / "clipped", "--train_vae", "--epochs", "2", "--max_grad_norm", "50")
    quick_train(tmp_path / "free", "--train_vae", "--epochs", "2", "--max_grad_norm", "0")
    clean = torch.load(tmp_path / "clipped" / "ck" / "vae.pt", weights_only=True)["model_state"]
    free = torch.load(tmp_path / "free" / "ck" / "vae.pt", weights_only=True)["model_state"]
    assert all(torch.equal(clean[k], free[k]) for k in clean)  # no norm came near the limit: the same run

    # one batch blown up 1e12-fold, as when a VAE's log-variance for one image reaches ~30 (seen in a beta = 8 run)
    original_loss, steps = models.VAE.loss, []
    def loss_with_one_blown_up_batch(self, x):
        terms = original_loss(self, x)
        steps.append(None)
        if len(steps) == 5:
            terms["total"] = terms["total"] * 1e12
        return terms
    monkeypatch.setattr(models.VAE, "loss", loss_with_one_blown_up_batch)
    quick_train(tmp_path / "blown_clipped", "--train_vae", "--epochs", "2", "--max_grad_norm", "50")
    steps.clear()
    quick_train(tmp_path / "blown_free", "--train_vae", "--epochs", "2", "--max_grad_norm", "0")
    # unclipped, Adam's second moments swell ~1e24-fold and the run stalls; clipped, it mostly carries on
    # (measured: 187.9 clean, 194.1 clipped, 208.3 unclipped after 60 steps)
    clean_loss, unclipped = val_loss(tmp_path / "clipped"), val_loss(tmp_path / "blown_free")
    assert unclipped > clean_loss + 10
    assert val_loss(tmp_path / "blown_clipped") < (clean_loss + unclipped) / 2


def test_clipping_leaves_gradients_below_the_limit_alone_and_scales_those_above_to_it():
    model = torch.nn.Linear(4, 3)
    model(torch.ones(2, 4)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in before]))
    training.clip_gradients(model, norm.item() * 2, torch.device("cpu"))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))
    training.clip_gradients(model, norm.item() / 4, torch.device("cpu"))
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert after.item() == pytest.approx(norm.item() / 4, rel=1e-4)
    assert all(torch.allclose(p.grad * 4, g, rtol=1e-4) for p, g in zip(model.parameters(), before))


def test_a_run_keeps_its_codes_epoch_by_epoch_and_keeping_them_moves_no_weight(tmp_path, monkeypatch):
    quick_train(tmp_path / "kept", "--train_vae", "--epochs", "2", "--max_train_images", "500")
    saved = torch.load(tmp_path / "kept" / "ck" / "vae.pt", weights_only=True)
    history = saved["code_history"]
    n = min(training.HISTORY_IMAGES, 5000)
    assert history["epochs"] == [1, 2] and history["codes"].shape == (2, n, 2)
    assert history["codes"].dtype == torch.float16 and history["labels"].shape == (n,)
    # the same images for every run of a dataset: the seeded draw, in the dataset's order
    assert torch.equal(history["index"].long(), training.history_index(data.load_dataset("mnist", DATA_DIR)["val"]))
    # the last frame is the finished model's codes of those images (float16)
    model = models.load_checkpoint(tmp_path / "kept" / "ck" / "vae.pt")
    images = data.load_dataset("mnist", DATA_DIR)["val"].images[history["index"].long()]
    assert torch.allclose(history["codes"][-1].float(), model.encode(images), atol=2e-2, rtol=1e-2)
    # a run that keeps no codes ends with the same weights, bit for bit
    monkeypatch.setattr(training, "CodeHistory", lambda *a, **k: None)
    quick_train(tmp_path / "none", "--train_vae", "--epochs", "2", "--max_train_images", "500")
    plain = torch.load(tmp_path / "none" / "ck" / "vae.pt", weights_only=True)
    assert "code_history" not in plain
    assert all(torch.equal(saved["model_state"][k], plain["model_state"][k]) for k in plain["model_state"])


@pytest.mark.slow
def test_a_resumed_run_has_the_history_of_an_uninterrupted_one(tmp_path, monkeypatch):
    quick_train(tmp_path / "whole", "--train_autoencoder", "--epochs", "2", "--max_train_images", "500")
    real_evaluate, calls = training.measures.evaluate_split, []

    def stop_in_epoch_two(model, split, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(model, split, *a, **k)
    monkeypatch.setattr(training.measures, "evaluate_split", stop_in_epoch_two)
    with pytest.raises(SystemExit):
        quick_train(tmp_path / "split", "--train_autoencoder", "--epochs", "2", "--max_train_images", "500")
    monkeypatch.setattr(training.measures, "evaluate_split", real_evaluate)
    assert torch.load(tmp_path / "split" / "ck" / "autoencoder.pt", weights_only=True)["code_history"]["epochs"] == [1]
    quick_train(tmp_path / "split", "--train_autoencoder", "--resume", "--max_train_images", "500")
    whole, resumed = (torch.load(tmp_path / w / "ck" / "autoencoder.pt", weights_only=True)["code_history"]
                      for w in ("whole", "split"))
    assert whole["epochs"] == resumed["epochs"] == [1, 2]
    assert torch.equal(whole["codes"], resumed["codes"]) and torch.equal(whole["labels"], resumed["labels"])


def test_a_model_whose_codes_are_not_2d_keeps_no_history(tmp_path):
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "1", "--max_train_images", "500", "--latent_dim", "3")
    assert "code_history" not in torch.load(tmp_path / "ck" / "autoencoder.pt", weights_only=True)


def test_early_stopping_ends_the_run_after_patience_epochs_and_keeps_the_best_epoch(tmp_path, monkeypatch):
    """The validation objective is scripted (4 is best, at epoch 2; epochs 3 and 4 do not beat it): with
    --patience 2 the run stops after epoch 4 of at most 6 and the checkpoint holds epoch 2's weights."""
    real_evaluate, objectives, weights = training.measures.evaluate_split, iter([5.0, 4.0, 4.5, 4.2, 1.0, 1.0]), []

    def scripted(model, split, *a, **k):
        metrics = real_evaluate(model, split, *a, **k)
        if len(split) == 5000:  # the validation split: each epoch's weights and its scripted objective
            weights.append({k: v.clone() for k, v in model.state_dict().items()})
            metrics["loss_total"] = next(objectives)
        return metrics
    monkeypatch.setattr(training.measures, "evaluate_split", scripted)
    quick_train(tmp_path, "--train_autoencoder", "--epochs", "6", "--max_train_images", "300", "--patience", "2",
                "--schedule", "constant")
    saved = torch.load(tmp_path / "ck" / "autoencoder.pt", weights_only=True)
    assert len(weights) == 4 and saved["epoch"] == 4 and saved["best_epoch"] == 2 and saved["completed"]
    assert saved["config"]["patience"] == 2 and saved["val_metrics"]["loss_total"] == 4.0
    assert all(torch.equal(saved["model_state"][k], weights[1][k]) for k in weights[1])
    assert not all(torch.equal(saved["model_state"][k], weights[3][k]) for k in weights[3])

"""The typed configurations (lab/config.py): identity and cache keys from field metadata, one definition per flag,
and every committed checkpoint read through the one upgrade function."""
import dataclasses
import glob
import os

import pytest

import evaluate
import explore_latent_space
import models
import study
from conftest import ROOT
from lab import config, runner, training
from lab.config import EvalConfig, TrainConfig

# train.py's flags that are not a TrainConfig field: what to train (one config per model), the list of betas,
# where to compute (changes no weight on the CPU) and --resume (an action, not a setting)
NOT_FIELDS = {"train_autoencoder", "train_vae", "beta", "device", "use_cuda", "resume", "help"}


def test_every_field_has_a_role_and_identity_holds_exactly_the_recipe_and_the_seed():
    for cls in (TrainConfig, EvalConfig):
        assert all(f.metadata.get("role") in (config.RECIPE, config.SEED, config.FILES, config.CACHE)
                   for f in dataclasses.fields(cls))
    run = TrainConfig()
    recipe_fields = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] == config.RECIPE}
    assert set(config.identity(run)) == recipe_fields | {"seed"}
    assert set(config.recipe(run)) == recipe_fields
    # a files-and-hardware field never makes another run; any recipe field does
    assert config.identity(config.replace(run, checkpoint_dir="/elsewhere", logdir="x", threads=3)) == config.identity(run)
    for f in dataclasses.fields(TrainConfig):
        if f.metadata["role"] == config.RECIPE and f.name != "dataset":
            changed = {"kind": "autoencoder", "hidden_dims": (8,), "image_size": (8, 8), "compile": True,
                       "precision": "bf16", "schedule": "constant", "activation": "relu"}.get(f.name, 7)
            assert config.identity(config.replace(run, **{f.name: changed})) != config.identity(run), f.name


def test_every_training_flag_is_a_config_field_so_a_new_one_cannot_miss_the_identity():
    parser_flags = {a.dest for a in training_parser()._actions}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert parser_flags - NOT_FIELDS <= fields, sorted(parser_flags - NOT_FIELDS - fields)


def training_parser():
    captured = {}
    real = training.cli.ArgumentParser.parse_args

    def grab(self, argv=None, namespace=None):
        captured["parser"] = self
        return real(self, argv, namespace)
    training.cli.ArgumentParser.parse_args = grab
    try:
        training.parse_args(["--train_vae"])
    finally:
        training.cli.ArgumentParser.parse_args = real
    return captured["parser"]


def test_the_command_line_builds_one_config_per_model_with_its_kind_and_beta():
    args = training.parse_args(["--train_autoencoder", "--train_vae", "--beta", "1", "4", "--epochs=3",
                                "--hidden_dim", "64", "--use_cuda"])
    runs = training.configs_of(args)
    assert [(r.kind, r.beta) for r in runs] == [("autoencoder", None), ("vae", 1.0), ("vae", 4.0)]
    assert all(r.epochs == 3 and r.hidden_dims == (64,) for r in runs)


def test_every_committed_checkpoint_reads_through_the_upgrade_function_as_the_run_it_is():
    paths = [p for p in glob.glob(os.path.join(ROOT, "checkpoints", "**", "*.pt"), recursive=True)
             if "judges" not in p]
    assert len(paths) >= 11
    for path in paths:
        checkpoint = models.read_checkpoint(path)
        run = config.from_checkpoint(checkpoint)
        assert run.kind == checkpoint["kind"] and run.seed == checkpoint["config"]["seed"]
        assert list(run.hidden_dims) == checkpoint["model_args"]["hidden_dims"]
        assert run.training_version == config.TRAINING_VERSION
    # the default pair is, to the study's runner, exactly the finished seed-0 run of the default recipe
    settings = study.study_config(study.parse_args([]), "cpu", "python study.py")
    for kind in ("autoencoder", "vae"):
        run = runner.RunConfig("mnist", kind, 0)
        path = runner.run_checkpoint(run, settings)[1]
        assert runner.checkpoint_state(path, runner.train_config_of(run, settings)) == "finished"


def test_an_older_file_without_the_newer_fields_gets_what_it_was_trained_with():
    old = {"kind": "vae", "model_args": {"hidden_dims": [256], "latent_dim": 2, "activation": "gelu", "beta": 1.0},
           "dataset": "mnist", "config": {"epochs": 20, "batch_size": 256, "lr": 3e-3, "schedule": "cosine", "seed": 4,
                                          "hidden_dims": [256], "latent_dim": 2, "activation": "gelu",
                                          "use_cuda": False, "device": "auto"}}
    run = config.from_checkpoint(old)
    assert (run.precision, run.compile, run.max_grad_norm, run.training_version) == ("fp32", False, 0.0, 0)
    assert (run.posterior_scale, run.init) == ("logvar", "pytorch")  # every file before these fields was so trained
    assert run.beta == 1.0 and run.seed == 4 and run.hidden_dims == (256,)
    assert config.identity(run) != config.identity(config.replace(TrainConfig(), seed=4, hidden_dims=(256,)))


def test_the_evaluation_cache_key_holds_every_evaluation_field_and_the_library_versions():
    settings = study.study_config(study.parse_args([]), "cpu", "python study.py")
    key = runner.evaluation_settings(settings)
    assert {f.name for f in dataclasses.fields(EvalConfig)} <= set(key)
    assert set(key["libraries"]) == set(runner.EVALUATION_LIBRARIES) and key["libraries"]["torch"]
    other = dataclasses.replace(settings, evaluation=config.replace(settings.evaluation, num_samples=7))
    assert runner.evaluation_settings(other) != key


@pytest.mark.parametrize("script, old, new", [(evaluate, "--iwae_k", "iwae_draws"), (evaluate, "--seed", "sample_seed"),
                                              (study, "--iwae_k", "iwae_draws")])
def test_old_spellings_still_work_and_say_they_are_deprecated(script, old, new, capsys):
    args = script.parse_args([old, "7"])
    assert getattr(args, new) == 7
    assert f"note: {old} is deprecated; its name is now --{new}" in capsys.readouterr().err


def test_explore_takes_the_sampling_seed_by_both_names():
    assert explore_latent_space.parse_args(["--seed", "3"]).sample_seed == 3
    assert explore_latent_space.parse_args(["--sample_seed", "4"]).sample_seed == 4


def test_a_recipe_field_an_older_file_does_not_record_is_unknown_not_todays_default():
    old = {"kind": "vae", "model_args": {"hidden_dims": [256, 256, 256], "latent_dim": 2, "activation": "gelu",
                                         "beta": 1.0},
           "dataset": "mnist", "config": {"epochs": 20, "batch_size": 256, "seed": 0, "hidden_dims": [256, 256, 256],
                                          "latent_dim": 2, "activation": "gelu", "training_version": 1,
                                          "max_grad_norm": 1e4, "precision": "fp32", "compile": False}}
    run = config.from_checkpoint(old)  # no lr, no schedule: what they were is not known
    assert run.lr == config.UNKNOWN and run.schedule == config.UNKNOWN
    assert config.identity(run) != config.identity(TrainConfig())


def test_a_judge_trained_for_a_folder_of_its_own_is_written_there_not_over_the_committed_one(tmp_path):
    from lab import judge
    committed = judge.judge_path("mnist", str(tmp_path))
    assert committed == os.path.join(ROOT, "checkpoints", "judges", "mnist_cnn.pt")  # read: the committed judge
    assert judge.judge_path("mnist", str(tmp_path), for_writing=True) == str(tmp_path / "judges" / "mnist_cnn.pt")
    assert judge.judge_path("tiles", str(tmp_path)) == str(tmp_path / "judges" / "tiles_cnn.pt")


def test_a_task_in_this_process_gives_back_the_thread_count_it_found(tmp_path, monkeypatch):
    import torch
    before = torch.get_num_threads()
    settings = config.StudyConfig(checkpoint_dir=str(tmp_path), threads=max(1, before - 1) if before > 1 else 2)
    seen = {}

    def fake_run_one(run, study, prepare, evaluate_one, cache_suffix, references):
        seen["threads"] = torch.get_num_threads()
        return {"ok": True}
    monkeypatch.setattr(runner, "run_one", fake_run_one)
    assert runner.run_task(runner.RunConfig("mnist", "vae", 3), settings, None, None, "", quiet=False) == {"ok": True}
    assert seen["threads"] == settings.threads and torch.get_num_threads() == before


def test_the_reference_runs_are_scored_against_is_computed_once_for_all_of_them(tmp_path, monkeypatch):
    prepared, handed = [], []

    def prepare(dataset, study):  # the judge and the test images' features: seconds each time
        prepared.append(dataset)
        return {"dataset": dataset, "floor": {"fid": float(len(dataset))}}

    def fake_run_one(run, study, prepare, evaluate_one, cache_suffix, references):
        handed.append(references[run.dataset])
        return {"config": run}
    monkeypatch.setattr(runner, "run_one", fake_run_one)
    study = config.StudyConfig(checkpoint_dir=str(tmp_path), jobs=1)
    runs = [runner.RunConfig(d, k, s, 1.0) for d in ("mnist", "binarized-mnist") for k in ("autoencoder", "vae")
            for s in (0, 1)]
    assert [r["config"] for r in runner.run_all(runs, study, prepare, None, "", "test")] == runs
    assert prepared == ["mnist", "binarized-mnist"]
    assert [h["dataset"] for h in handed] == [r.dataset for r in runs]
    # the floor came with it and is cached: the study's floor_of computes nothing more
    assert runner.floor_of("binarized-mnist", prepare, study) == {"fid": 15.0} and len(prepared) == 2

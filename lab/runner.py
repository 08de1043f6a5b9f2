"""The cached experiment runner: a list of run configurations in, one record per run out.

Each run is trained with train.py's default recipe unless its checkpoint already holds a finished run of that
very configuration (an unfinished one is resumed), then evaluated unless an evaluation of that very checkpoint
(its SHA-256) with the same settings is cached. So an interrupted experiment continues where it stopped, and a
second call retrains and re-evaluates nothing (as in google-research/disentanglement_lib: train -> evaluate ->
aggregate, each re-runnable on its own results).

Seed 0 of the default models is the README's default run, in <checkpoint_dir> itself; every other run lives
in <checkpoint_dir>/study/<dataset>-seed<S>/, its cached evaluations in <checkpoint_dir>/study/evaluations/.
"""
import json
import os
import sys
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

import data
import models
from lab import training
from lab.files import file_sha256, write_atomically, writable_dir

EVALUATION_VERSION = 1  # bump when an experiment's evaluation changes, so cached evaluations are redone
CACHE_BOOKKEEPING = ("checkpoint_sha256", "settings", "evaluate_seconds")


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    kind: str  # "autoencoder" or "vae"
    seed: int
    beta: float = 1.0  # None for the AutoEncoder in the β sweep's records

    @property
    def run_id(self):
        return f"{self.dataset}-{training.run_name(self.kind, self.beta, 'mnist')}-seed{self.seed}"


def recipe_argv(config, checkpoint_dir, args):
    """train.py's command line for one run: the default recipe; only seed, dataset and beta vary."""
    beta = 1.0 if config.beta is None else config.beta
    argv = ["--dataset", config.dataset, "--seed", str(config.seed), "--checkpoint_dir", checkpoint_dir,
            "--data_dir", args.data_dir, "--logdir", args.logdir, "--beta", repr(float(beta))]
    return argv + (["--epochs", "1", "--max_train_images", "1000"] if args.quick else [])


def run_checkpoint(config, args):
    """(folder, checkpoint path) of a run: seed 0 of the default models is the default run, in checkpoint_dir."""
    default_run = config.seed == 0 and (config.kind == "autoencoder" or config.beta == 1)
    folder = args.checkpoint_dir if default_run else \
        os.path.join(args.checkpoint_dir, "study", f"{config.dataset}-seed{config.seed}")
    return folder, os.path.join(folder, training.run_name(config.kind, config.beta, config.dataset) + ".pt")


def checkpoint_state(path, train_args, beta=1.0):
    """'finished' if path holds a finished run of exactly this configuration, 'unfinished' if it holds one
    that can be resumed, else 'missing' (no file, another configuration, or unreadable: retrained, and
    training moves the old file to previous/ first)."""
    if not os.path.exists(path):
        return "missing"
    try:
        checkpoint = models.read_checkpoint(path)
    except models.CheckpointError:
        return "missing"
    config = checkpoint.get("config") or {}
    same = (checkpoint.get("dataset", "mnist") == train_args.dataset
            and all(config.get(k) == getattr(train_args, k) for k in training.RESUMED_SETTINGS if k != "dataset")
            and config.get("max_train_images") == train_args.max_train_images
            and checkpoint["model_args"].get("beta", 1.0) == (1.0 if checkpoint["kind"] == "autoencoder" else beta)
            and checkpoint["model_args"].get("iwae_k", 1) == 1)
    if not same:
        return "missing"
    if checkpoint.get("completed"):
        return "finished"
    return "unfinished" if "random_state" in checkpoint else "missing"


def train_run(config, splits, args):
    """Train one run unless its checkpoint already holds it; returns the checkpoint's path and seconds spent."""
    folder, path = run_checkpoint(config, args)
    flag = "--train_autoencoder" if config.kind == "autoencoder" else "--train_vae"
    train_args = training.parse_args([flag] + recipe_argv(config, folder, args))
    state = checkpoint_state(path, train_args, config.beta)
    if state == "finished":
        return path, 0.0
    writable_dir(folder)
    writable_dir(args.logdir)
    train_args.resume = state == "unfinished"
    started = time.perf_counter()
    beta = None if config.kind == "autoencoder" else config.beta
    training.train_one(config.kind, beta, splits, train_args, torch.device("cpu"))
    return path, time.perf_counter() - started


def evaluation_settings(args):
    return {"version": EVALUATION_VERSION, "num_samples": args.num_samples, "iwae_k": args.iwae_k,
            "iwae_images": args.iwae_images}


def cached_evaluation(cache_path, sha256, settings):
    try:
        with open(cache_path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    return cached if cached.get("checkpoint_sha256") == sha256 and cached.get("settings") == settings else None


def run_all(configs, args, prepare, evaluate_one, cache_suffix, title):
    """Train and evaluate each configuration, from the caches where they hold; returns the per-run records
    and {dataset: prepare(dataset, args)} (what every run of a dataset is evaluated against).

    evaluate_one(model, splits, prepared, args) -> a JSON-able dict, cached per checkpoint."""
    cache_dir = writable_dir(os.path.join(args.checkpoint_dir, "study", "evaluations"))
    settings = evaluation_settings(args)
    records, prepared = [], {}
    bar = tqdm(total=2 * len(configs), unit="step", desc=title, file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {n}/{total} steps (train + evaluate per run) [{elapsed}<{remaining}] {postfix}")
    for dataset in dict.fromkeys(c.dataset for c in configs):
        splits = data.load_dataset(dataset, args.data_dir, "cpu", 1000 if args.quick else None)
        prepared[dataset] = prepare(dataset, args)
        for config in [c for c in configs if c.dataset == dataset]:
            bar.set_postfix_str(f"{config.run_id}: training")
            path, train_seconds = train_run(config, splits, args)
            bar.update()
            bar.set_postfix_str(f"{config.run_id}: evaluating")
            sha256 = file_sha256(path)
            cache_path = os.path.join(cache_dir, f"{config.run_id}{cache_suffix}.json")
            cached = cached_evaluation(cache_path, sha256, settings)
            if cached is None:
                t = time.perf_counter()
                result = evaluate_one(models.load_checkpoint(path), splits, prepared[dataset], args)
                cached = {"checkpoint_sha256": sha256, "settings": settings, **result,
                          "evaluate_seconds": time.perf_counter() - t}
                write_atomically(cache_path, json.dumps(cached, indent=1) + "\n")
            bar.update()
            records.append({"config": config, "checkpoint": path, "checkpoint_sha256": sha256,
                            "result": {k: v for k, v in cached.items() if k not in CACHE_BOOKKEEPING},
                            "train_seconds_this_invocation": round(train_seconds, 1),
                            "evaluate_seconds": round(cached["evaluate_seconds"], 1)})
    bar.close()
    return records, prepared

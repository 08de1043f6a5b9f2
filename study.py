"""The study: which claims about the AutoEncoder and the VAE hold across training seeds?

    python study.py               # trains what is missing, evaluates every run -> readme/study.{json,md}, study_*.png
    python study.py --beta_sweep  # the beta continuum from AutoEncoder to VAE -> readme/beta_sweep.{json,md}, beta_*.png
    python study.py --quick       # 2 seeds, 1 epoch, small subsets: the whole pipeline in seconds (the tests use it)

Three steps, each re-runnable on its own results (as in google-research/disentanglement_lib):
  1. train    every (dataset, model, seed[, beta]) with train.py's default recipe, unless its checkpoint
              already holds a finished run of that configuration (an unfinished one is resumed);
  2. evaluate every run: evaluate.py's measures, plus the Fréchet distance and precision/recall of
              samples from three samplers, unless a cached evaluation of that very checkpoint exists;
  3. aggregate the per-run results into means with 95 % intervals over seeds, and a verdict for each claim
              from the paired VAE - AE differences; tables and figures are drawn from that file alone.

Seed 0 is the README's default run: its checkpoints are the committed ones in checkpoints/. Other seeds
live in checkpoints/study/<dataset>-seed<S>/ (not committed; their results are, in readme/study.json).
"""
import hashlib
import json
import math
import os
import re
import shlex
import signal
import sys
import time
from argparse import Namespace

import numpy as np
import torch
from tqdm import tqdm

import cli
import data
import evaluate
import metrics
import models
import train
from explore_latent_space import encode_in_batches, latent_grid

MODEL_KINDS = ("autoencoder", "vae")
SAMPLERS = ("prior", "gaussian", "gmm")  # N(0, I); a Gaussian fitted to the training codes; a 10-component mixture
SWEEP_BETAS = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # from an AutoEncoder with noisy codes to posterior collapse
SAMPLE_MEASURES = ("fid", "precision", "recall", "confident", "class_entropy_bits")
EVALUATION_VERSION = 1  # bump when evaluate_run changes, so cached evaluations are redone
TITLES = {"autoencoder": "AutoEncoder", "vae": "VAE", "prior": "N(0, I)", "gaussian": "fitted Gaussian",
          "gmm": "fitted 10-Gaussian mixture", "mnist": "MNIST", "binarized-mnist": "binarised MNIST",
          "fashion-mnist": "Fashion-MNIST"}

# Each claim as (what it says, per-run measure, sampler or None, sign of VAE - AE when the claim is right).
CLAIMS = [
    ("the VAE's codes are closer to N(0, I)", "mmd2_to_prior", None, -1),
    ("the VAE's prior samples are better", "fid", "prior", -1),
    ("the VAE's prior samples are better", "precision", "prior", +1),
    ("the VAE's prior samples are better", "recall", "prior", +1),
    ("the VAE's prior samples are better", "confident", "prior", +1),
    ("the VAE's prior samples are better", "class_entropy_bits", "prior", +1),
    ("the AutoEncoder has more meaningless regions", "grid_confident", None, +1),
    ("the AutoEncoder has more meaningless regions", "own_grid_confident", None, +1),
    ("reconstructions cost the VAE something", "test_loss_recon", None, +1),
    ("reconstructions cost the VAE something", "ink_f1", None, -1),
    # The fair comparison (Ghosh et al. 2020). "holds": the AutoEncoder is measurably better; "not shown":
    # no difference measurable over these seeds; "reversed": the VAE stays better even then.
    ("with a fitted mixture the AutoEncoder samples as well as the VAE", "fid", "gmm", +1),
    ("with a fitted mixture the AutoEncoder samples as well as the VAE", "precision", "gmm", -1),
    ("with a fitted mixture the AutoEncoder samples as well as the VAE", "recall", "gmm", -1),
    ("with a fitted mixture the AutoEncoder samples as well as the VAE", "confident", "gmm", -1),
]
MEASURE_TITLES = {
    "mmd2_to_prior": "MMD² of test codes to N(0, I)", "fid": "Fréchet distance (judge features)",
    "precision": "precision (k = 3)", "recall": "recall (k = 3)", "confident": "judged confident (≥ 0.9)",
    "class_entropy_bits": "class entropy, bits", "grid_confident": "[−1.5, 1.5]² grid judged confident",
    "own_grid_confident": "grid over its own codes judged confident",
    "test_loss_recon": "reconstruction cross-entropy, nats", "ink_f1": "ink F1 of reconstructions",
}


def parse_args(argv=None):
    p = cli.ArgumentParser(
        prog="study.py",
        description="Train (what is missing), evaluate and aggregate the AE-vs-VAE study over seeds: writes "
                    "<output_dir>/study.json (every run, means with 95 % intervals, a verdict per claim), study.md "
                    "and study_*.png, and refreshes the study table in README.md. Finished runs and their "
                    "evaluations are cached, so an interrupted study continues where it stopped.")
    p.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=None, metavar="S",
                   help="training seeds; seed 0 is the README's default run (default: 0 1 2 3 4; with --quick: 0 1)")
    p.add_argument("--datasets", nargs="+", choices=sorted(data.DATASETS), default=None,
                   metavar="D", help="datasets, from " + ", ".join(sorted(data.DATASETS)) + " (default: mnist "
                                     "binarized-mnist; fashion-mnist needs Debian's dataset-fashion-mnist or the files "
                                     "in --data_dir)")
    p.add_argument("--checkpoint_dir", default="checkpoints",
                   help="seed 0's checkpoints are here, the others in <checkpoint_dir>/study/ (default: %(default)s)")
    p.add_argument("--data_dir", default="data", help="folder holding MNIST/raw/ (default: %(default)s)")
    p.add_argument("--logdir", default=None,
                   help="TensorBoard runs of the models trained here (default: logs/study; with --quick: "
                        "<checkpoint_dir>/logs)")
    p.add_argument("-o", "--output_dir", default="readme", help="where study.json/.md and figures go (default: %(default)s)")
    p.add_argument("--readme", default="README.md",
                   help="README whose study table (between <!-- study:begin --> and <!-- study:end -->) is "
                        "rewritten; 'none' leaves it alone (default: %(default)s)")
    p.add_argument("--num_samples", type=cli.positive_int, default=10000,
                   help="decoded samples per model and sampler, and test images they are compared with (default: %(default)s)")
    p.add_argument("--iwae_k", type=cli.positive_int, default=1000,
                   help="importance samples per image for the VAE's IWAE bound (default: %(default)s)")
    p.add_argument("--iwae_images", type=cli.positive_int, default=None,
                   help="test images for the IWAE bound (default: all 10 000; 1000 with --beta_sweep)")
    p.add_argument("--beta_sweep", action="store_true",
                   help="the beta continuum instead: VAEs at each --betas value and the AutoEncoder (--seeds 0 1 2 by "
                        "default) on one dataset (--datasets, default mnist) -> beta_sweep.json/.md, beta_*.png, and "
                        "the beta table in README.md; the IWAE bound then uses 1000 test images unless --iwae_images "
                        "says otherwise")
    p.add_argument("--betas", type=cli.non_negative_float, nargs="+", default=SWEEP_BETAS, metavar="B",
                   help="KL weights of the sweep (default: 0 0.1 0.25 0.5 1 2 4 8)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test of the whole pipeline: seeds 0 1, 1 epoch on 1000 training images, 500 samples, "
                        "IWAE with k = 10 on 100 images; needs --checkpoint_dir and --output_dir away from the real ones")
    args = p.parse_args(argv)
    if args.quick:
        if os.path.abspath(args.checkpoint_dir) == os.path.abspath("checkpoints") or \
                os.path.abspath(args.output_dir) == os.path.abspath("readme"):
            p.error("--quick needs its own --checkpoint_dir and --output_dir (it must not touch the real study)")
        args.num_samples, args.iwae_k, args.iwae_images = min(args.num_samples, 500), 10, 100
        args.readme = "none"
    args.datasets = args.datasets or (["mnist"] if args.beta_sweep else ["mnist", "binarized-mnist"])
    args.iwae_images = args.iwae_images or (1000 if args.beta_sweep else 10000)
    if args.beta_sweep and len(args.datasets) > 1:
        p.error("--beta_sweep runs on one dataset: give one --datasets value")
    args.logdir = args.logdir or (os.path.join(args.checkpoint_dir, "logs") if args.quick else os.path.join("logs", "study"))
    args.seeds = sorted(set(args.seeds or ([0, 1] if args.quick else [0, 1, 2] if args.beta_sweep else [0, 1, 2, 3, 4])))
    return args


# ---- 1. train ----

def recipe_argv(dataset, seed, checkpoint_dir, args, beta=1.0):
    """train.py's command line for one run of the study: the default recipe; only seed, dataset and beta vary."""
    argv = ["--dataset", dataset, "--seed", str(seed), "--checkpoint_dir", checkpoint_dir,
            "--data_dir", args.data_dir, "--logdir", args.logdir, "--beta", repr(float(1.0 if beta is None else beta))]
    return argv + (["--epochs", "1", "--max_train_images", "1000"] if args.quick else [])


def run_checkpoint(dataset, kind, seed, args, beta=1.0):
    """Seed 0 of the default models is the README's default run, in checkpoint_dir itself; every other run
    lives in checkpoint_dir/study/<dataset>-seed<S>/."""
    default_run = seed == 0 and (kind == "autoencoder" or beta == 1)
    folder = args.checkpoint_dir if default_run else os.path.join(args.checkpoint_dir, "study", f"{dataset}-seed{seed}")
    return folder, os.path.join(folder, train.run_name(kind, beta, dataset) + ".pt")


def checkpoint_state(path, train_args, beta=1.0):
    """'finished' if path holds a finished run of exactly this configuration, 'unfinished' if it holds one
    that can be resumed, else 'missing' (no file, another configuration, or unreadable: retrained, and
    train.py moves the old file to previous/ first)."""
    if not os.path.exists(path):
        return "missing"
    try:
        checkpoint = models.read_checkpoint(path)
    except models.CheckpointError:
        return "missing"
    config = checkpoint.get("config") or {}
    same = (checkpoint.get("dataset", "mnist") == train_args.dataset
            and all(config.get(k) == getattr(train_args, k) for k in train.RESUMED_SETTINGS if k != "dataset")
            and config.get("max_train_images") == train_args.max_train_images
            and checkpoint["model_args"].get("beta", 1.0) == (1.0 if checkpoint["kind"] == "autoencoder" else beta)
            and checkpoint["model_args"].get("iwae_k", 1) == 1)
    if not same:
        return "missing"
    if checkpoint.get("completed"):
        return "finished"
    return "unfinished" if "random_state" in checkpoint else "missing"


def train_run(dataset, kind, seed, splits, args, beta=1.0):
    """Train one run unless its checkpoint already holds it; returns the checkpoint's path and seconds spent."""
    folder, path = run_checkpoint(dataset, kind, seed, args, beta)
    flag = "--train_autoencoder" if kind == "autoencoder" else "--train_vae"
    train_args = train.parse_args([flag] + recipe_argv(dataset, seed, folder, args, beta))
    state = checkpoint_state(path, train_args, beta)
    if state == "finished":
        return path, 0.0
    cli.writable_dir(folder)
    cli.writable_dir(args.logdir)
    train_args.resume = state == "unfinished"
    started = time.perf_counter()
    train.train_one(kind, None if kind == "autoencoder" else beta, splits, train_args, torch.device("cpu"))
    return path, time.perf_counter() - started


# ---- 2. evaluate ----

def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation_settings(args):
    return {"version": EVALUATION_VERSION, "num_samples": args.num_samples, "iwae_k": args.iwae_k,
            "iwae_images": args.iwae_images}


@torch.no_grad()
def own_grid(codes, grid_size=20):
    """A grid_size^2 grid over the box holding the central 99 % of the codes on each axis."""
    low, high = torch.quantile(codes.cpu(), torch.tensor([0.005, 0.995]), dim=0)
    return low + (high - low) * (latent_grid(1.0, grid_size) + 1) / 2


@torch.no_grad()
def evaluate_run(model, splits, judge, reference, args, seed=0):
    """Every measure of one trained model: evaluate.py's, the grid over its own codes, and for each sampler
    the Fréchet distance, precision and recall against the test images and the judge's verdicts."""
    eval_args = Namespace(seed=seed, iwae_k=args.iwae_k, iwae_images=args.iwae_images,
                          num_samples=args.num_samples, grid_range=1.5, grid_size=20)
    result = evaluate.evaluate_model(model, splits, judge, eval_args)
    test_codes = encode_in_batches(model, splits["test"].images)
    result["own_grid_confident"] = metrics.judge_samples(judge, model.decode(own_grid(test_codes)))["confident"]
    # the fitted samplers see the training codes as the model saw its training images (VAE: posterior means)
    train_codes = encode_in_batches(model, splits["train"].sample_images())
    samplers = {
        "prior": lambda n: torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)),
        "gaussian": metrics.fitted_gaussian_sampler(train_codes, seed),
        "gmm": metrics.fitted_mixture_sampler(train_codes, components=10, seed=seed),
    }
    return result, {name: sample_measures(model, sample(args.num_samples), judge, reference)
                    for name, sample in samplers.items()}


@torch.no_grad()
def sample_measures(model, codes, judge, reference):
    """Decode the codes; Fréchet distance and precision/recall against the reference (the test images' judge
    features and their 3rd-neighbour radii); the judge's confident share and class entropy."""
    images = torch.cat([model.decode(z) for z in codes.split(2000)])
    features = metrics.judge_features(judge, images)
    return {"fid": metrics.frechet_distance(reference["features"], features),
            **metrics.precision_recall(reference["features"], features, k=3, real_radii=reference["radii"]),
            **metrics.judge_samples(judge, images)}


def reference_sets(dataset, args):
    """The judge's dataset, in grey levels: test images are what samples are compared with; training images
    give the floor (how far real data is from the test set). Binarised MNIST is compared with the grey images:
    a decoder's output is a pixel probability, the grey level the binary pixels are drawn from."""
    judge_dataset = data.DATASETS[dataset].judge or dataset
    splits = data.load_dataset(judge_dataset, args.data_dir)
    return splits["test"].images[:args.num_samples], splits["train"].images[:args.num_samples]


def load_judge(dataset, args):
    path = evaluate.CLASSIFIER_PATH.format(dataset=data.DATASETS[dataset].judge or dataset)
    judge = models.load_checkpoint(path)
    if judge.kind != "classifier":
        raise cli.UserError(f"{path}: a {judge.kind} checkpoint, not the digit classifier")
    return judge


CACHE_BOOKKEEPING = ("checkpoint_sha256", "settings", "evaluate_seconds")


def cached_evaluation(cache_path, sha256, settings):
    try:
        with open(cache_path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    return cached if cached.get("checkpoint_sha256") == sha256 and cached.get("settings") == settings else None


# ---- 3. aggregate ----

def summarise(runs):
    """Mean and 95 % interval over seeds of every measure, per (dataset, model, sampler)."""
    groups = {}
    for run in runs:
        for metric, value in run["metrics"].items():
            groups.setdefault((run["dataset"], run["model"], None, metric), []).append(value)
        for sampler, measures in run["samplers"].items():
            for metric, value in measures.items():
                groups.setdefault((run["dataset"], run["model"], sampler, metric), []).append(value)
    summary = []
    for (dataset, model, sampler, metric), values in groups.items():
        mean, ci = metrics.mean_ci95(values)
        summary.append({"dataset": dataset, "model": model, "sampler": sampler, "metric": metric,
                        "n": len(values), "mean": mean, "ci95": list(ci)})
    return summary


def run_value(run, metric, sampler):
    return run["samplers"].get(sampler, {}).get(metric) if sampler else run["metrics"].get(metric)


def compare(runs):
    """One object per claim and dataset: the paired difference VAE - AE over seeds, its interval, the verdict."""
    comparisons = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        by_seed = {(r["model"], r["seed"]): r for r in runs if r["dataset"] == dataset}
        seeds = sorted(s for m, s in by_seed if m == "vae" and ("autoencoder", s) in by_seed)
        for claim, metric, sampler, direction in CLAIMS:
            pairs = [(run_value(by_seed["autoencoder", s], metric, sampler), run_value(by_seed["vae", s], metric, sampler))
                     for s in seeds]
            pairs = [(a, v) for a, v in pairs if a is not None and v is not None]
            if not pairs:
                continue
            mean, ci = metrics.mean_ci95([v - a for a, v in pairs])
            comparisons.append({"dataset": dataset, "claim": claim, "metric": metric, "sampler": sampler,
                                "n": len(pairs), "direction": "VAE > AE" if direction > 0 else "VAE < AE",
                                "autoencoder_mean": sum(a for a, _ in pairs) / len(pairs),
                                "vae_mean": sum(v for _, v in pairs) / len(pairs),
                                "mean_difference": mean, "ci95": list(ci), "verdict": metrics.verdict(ci, direction)})
    return comparisons


def number(value, metric):
    if metric in ("precision", "recall", "confident", "grid_confident", "own_grid_confident", "ink_f1"):
        return f"{value:.3f}"
    if metric == "mmd2_to_prior":
        return f"{value:.4f}"
    return f"{value:.2f}"


def interval(ci, metric):
    if any(c != c for c in ci):  # nan: a single seed
        return "–"
    return f"[{number(ci[0], metric)}, {number(ci[1], metric)}]"


def claims_table(comparisons):
    lines = ["| data | claim | measure | AutoEncoder | VAE | VAE − AE (95 % CI) | verdict |", "|---" * 7 + "|"]
    previous = None
    for c in comparisons:
        claim = c["claim"] if (c["dataset"], c["claim"]) != previous else "〃"
        previous = (c["dataset"], c["claim"])
        measure = MEASURE_TITLES[c["metric"]] + (f", {TITLES[c['sampler']]} samples" if c["sampler"] else "")
        diff = f"{number(c['mean_difference'], c['metric'])} {interval(c['ci95'], c['metric'])}"
        verdict = {"holds": "**holds**", "reversed": "**reversed**"}.get(c["verdict"], c["verdict"])
        lines.append(f"| {TITLES.get(c['dataset'], c['dataset'])} | {claim} | {measure} | "
                     f"{number(c['autoencoder_mean'], c['metric'])} | {number(c['vae_mean'], c['metric'])} | "
                     f"{diff} | {verdict} |")
    return "\n".join(lines) + "\n"


def samplers_table(summary, floors):
    """Mean [95 % CI] of each sample measure, per dataset, model and sampler."""
    index = {(s["dataset"], s["model"], s["sampler"], s["metric"]): s for s in summary}
    lines = ["| data | model | sampler | " + " | ".join(MEASURE_TITLES[m].split(" (")[0] for m in SAMPLE_MEASURES) + " |",
             "|---" * (3 + len(SAMPLE_MEASURES)) + "|"]
    for dataset in floors:
        for model in MODEL_KINDS:
            for sampler in SAMPLERS:
                cells = []
                for m in SAMPLE_MEASURES:
                    s = index.get((dataset, model, sampler, m))
                    cells.append("–" if s is None else f"{number(s['mean'], m)} {interval(s['ci95'], m)}")
                lines.append(f"| {TITLES.get(dataset, dataset)} | {TITLES[model]} | {TITLES[sampler]} | " + " | ".join(cells) + " |")
        floor = floors[dataset]
        lines.append(f"| {TITLES.get(dataset, dataset)} | training images (the floor) | – | " + " | ".join(
            number(floor[m], m) if m in floor else "–" for m in SAMPLE_MEASURES) + " |")
    return "\n".join(lines) + "\n"


def samplers_figure(summary, floors):
    """The sample measures per model and sampler, mean and 95 % interval over seeds; one row per dataset."""
    import matplotlib.pyplot as plt
    datasets = list(floors)
    index = {(s["dataset"], s["model"], s["sampler"], s["metric"]): s for s in summary}
    fig, axes = plt.subplots(len(datasets), len(SAMPLE_MEASURES), figsize=(3.1 * len(SAMPLE_MEASURES), 2.9 * len(datasets)),
                             dpi=100, squeeze=False)
    colours = {"autoencoder": "tab:blue", "vae": "tab:red"}
    for row, dataset in enumerate(datasets):
        for col, metric in enumerate(SAMPLE_MEASURES):
            ax = axes[row, col]
            for offset, model in ((-0.12, "autoencoder"), (0.12, "vae")):
                for x, sampler in enumerate(SAMPLERS):
                    s = index.get((dataset, model, sampler, metric))
                    if s is None:
                        continue
                    low, high = s["ci95"]
                    err = [[s["mean"] - low], [high - s["mean"]]] if low == low else None
                    ax.errorbar(x + offset, s["mean"], yerr=err, fmt="o", color=colours[model], capsize=3,
                                label=TITLES[model] if x == 0 else None)
            if metric in floors[dataset]:
                ax.axhline(floors[dataset][metric], color="gray", linestyle="--", linewidth=1,
                           label="training images" if metric == "fid" else None)
            ax.set_xticks(range(len(SAMPLERS)), ["N(0, I)", "Gaussian", "mixture"])
            ax.set_title(MEASURE_TITLES[metric].split(" (")[0] + (" ↓" if metric == "fid" else " ↑"), fontsize=10)
            if col == 0:
                ax.set_ylabel(TITLES.get(dataset, dataset))
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    n = max((s["n"] for s in summary), default=0)
    fig.suptitle(f"Samples of each model by sampler: mean and 95 % interval over {n} seeds "
                 "(fitted samplers: on the training codes)")
    fig.tight_layout()
    return fig


# ---- the beta continuum (--beta_sweep) ----

@torch.no_grad()
def evaluate_sweep_run(model, splits, judge, reference, args, seed=0):
    """Rate and distortion (Alemi et al. 2018), the ELBO and IWAE bounds, active dimensions, the codes' distance
    to N(0, I) and the prior samples' measures of one model of the sweep."""
    test = splits["test"]
    terms = metrics.evaluate(model, test)
    codes = encode_in_batches(model, test.images)
    result = {"distortion_nats": terms["loss_recon"], "rate_nats": terms.get("loss_kl"),
              "neg_elbo_nats": terms["loss_recon"] + terms["loss_kl"] if "loss_kl" in terms else None,
              "iwae_nll": None, "active_dims": metrics.active_dimensions(codes),
              "mmd2_to_prior": metrics.prior_match(codes, seed=seed)["mmd2_to_prior"]}
    if model.kind == "vae":
        result["iwae_nll"] = metrics.iwae_nll_of_split(model, test.images[:args.iwae_images], k=args.iwae_k, seed=seed)
    prior = torch.randn(args.num_samples, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return result | sample_measures(model, prior, judge, reference)


SWEEP_TABLE = [("rate_nats", "rate (KL), nats"), ("distortion_nats", "distortion, nats"),
               ("neg_elbo_nats", "−ELBO, nats"), ("iwae_nll", "IWAE −log p(x), nats"),
               ("active_dims", "active dims"), ("mmd2_to_prior", "MMD² to N(0, I)"), ("fid", "prior-sample FID"),
               ("precision", "precision"), ("recall", "recall"), ("confident", "confident")]


def summarise_sweep(runs):
    groups = {}
    for run in runs:
        for metric, _ in SWEEP_TABLE:
            # None: not defined for this model (the AutoEncoder's rate); nan: not computable (the committed
            # sweep's IWAE bound of a beta = 0 VAE, from before metrics.iwae_nll handled point-like posteriors)
            # -- left out, so n says how many remain
            if run.get(metric) is not None and math.isfinite(run[metric]):
                groups.setdefault((run["beta"], metric), []).append(run[metric])
    summary = []
    for (beta, metric), values in groups.items():
        mean, ci = metrics.mean_ci95(values)
        summary.append({"beta": beta, "metric": metric, "n": len(values), "mean": mean, "ci95": list(ci)})
    return summary


def sweep_table(summary):
    index = {(s["beta"], s["metric"]): s for s in summary}
    betas = sorted({s["beta"] for s in summary}, key=lambda b: (b is not None, b if b is not None else 0))
    lines = ["| model | " + " | ".join(title for _, title in SWEEP_TABLE) + " |", "|---" * (1 + len(SWEEP_TABLE)) + "|"]
    for beta in betas:
        cells = []
        for metric, _ in SWEEP_TABLE:
            s = index.get((beta, metric))
            cells.append("–" if s is None else f"{number(s['mean'], metric)} {interval(s['ci95'], metric)}")
        name = "AutoEncoder" if beta is None else f"VAE, β = {beta:g}"
        lines.append(f"| {'**' + name + '**' if beta == 1 else name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def beta_label(beta):
    return "AE" if beta is None else f"β={beta:g}"


def rate_distortion_figure(runs):
    """One point per run in the rate-distortion plane (Alemi et al. 2018), with the line rate + distortion =
    the beta = 1 runs' mean -ELBO: every point on it has the same ELBO; beta only moves along it."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=100)
    vaes = [r for r in runs if r["beta"] is not None]
    betas = sorted({r["beta"] for r in vaes})
    colours = plt.get_cmap("viridis")
    for i, beta in enumerate(betas):
        points = [(r["rate_nats"], r["distortion_nats"]) for r in vaes if r["beta"] == beta]
        colour = colours(i / max(1, len(betas) - 1))
        ax.scatter(*zip(*points), color=colour, s=30, label=f"β = {beta:g}", zorder=3)
        rate, distortion = (sum(p[k] for p in points) / len(points) for k in (0, 1))
        ax.annotate(f"β={beta:g}", (rate, distortion), xytext=(6, 4), textcoords="offset points", fontsize=9)
    optimum = [r["neg_elbo_nats"] for r in vaes if r["beta"] == 1.0]
    if optimum:
        total = sum(optimum) / len(optimum)
        rates = np.geomspace(min(r["rate_nats"] for r in vaes) * 0.8, max(r["rate_nats"] for r in vaes) * 1.2, 200)
        ax.plot(rates, total - rates, "k--", linewidth=1, label=f"rate + distortion = {total:.1f} (β = 1, −ELBO)")
    autoencoders = [r["distortion_nats"] for r in runs if r["beta"] is None]
    if autoencoders:
        ax.axhline(sum(autoencoders) / len(autoencoders), color="tab:blue", linestyle=":",
                   label="AutoEncoder's distortion (no rate: its codes are points)")
    # the rate spans 4 to 140 nats: a log axis keeps every beta readable (the constant-ELBO line curves on it)
    ax.set_xscale("log")
    distortions = [r["distortion_nats"] for r in runs]
    ax.set_ylim(min(distortions) - 3, max(distortions) + 4)
    ax.set_xlabel("rate = KL(q(z|x) ‖ N(0, I)), nats (log scale)")
    ax.set_ylabel("distortion = E_q[−log p(x|z)], nats")
    ax.set_title("From AutoEncoder to VAE: rate and distortion of every run")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@torch.no_grad()
def sweep_row_figure(models_by_beta, draw, title):
    """One panel per model (AE first, then beta rising), drawn by draw(ax, model, beta)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(models_by_beta), figsize=(2.3 * len(models_by_beta), 2.9), dpi=100, squeeze=False)
    for ax, (beta, model) in zip(axes[0], models_by_beta.items()):
        draw(ax, model, beta)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_latent_scatter(images, labels):
    import matplotlib.pyplot as plt
    colours = plt.get_cmap("tab10")  # the colours of latent_dist_figure

    def draw(ax, model, beta):
        codes = encode_in_batches(model, images)
        ax.scatter(codes[:, 0], codes[:, 1], s=0.5, c=[colours(int(l)) for l in labels], rasterized=True)
        reach = codes.abs().max().item()
        ax.set_title(f"{beta_label(beta)}\nscale ±{reach:.3g}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=6)
    return draw


def draw_prior_samples(seed=0, n=64):
    from explore_latent_space import show_image_grid

    def draw(ax, model, beta):
        z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
        show_image_grid(ax, model.decode(z), int(n ** 0.5), beta_label(beta))
    return draw


def replace_readme_block(readme_path, block, name="study"):
    with open(readme_path) as f:
        text = f.read()
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        print(f"{readme_path}: no <!-- {name}:begin --> ... <!-- {name}:end --> block; left alone")
        return
    cli.write_atomically(readme_path, pattern.sub(lambda m: m.group(1) + block + m.group(2), text))


def run_all(configs, args, evaluate_one, cache_suffix, bar_title):
    """Train and evaluate each (dataset, kind, seed, beta), from caches where they hold; the per-run records."""
    cache_dir = cli.writable_dir(os.path.join(args.checkpoint_dir, "study", "evaluations"))
    settings = evaluation_settings(args)
    records, floors = [], {}
    bar = tqdm(total=2 * len(configs), unit="step", desc=bar_title, file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {n}/{total} steps (train + evaluate per run) [{elapsed}<{remaining}] {postfix}")
    for dataset in dict.fromkeys(c[0] for c in configs):
        splits = data.load_dataset(dataset, args.data_dir, "cpu", 1000 if args.quick else None)
        judge = load_judge(dataset, args)
        reference_images, floor_images = reference_sets(dataset, args)
        reference_features = metrics.judge_features(judge, reference_images)
        reference = {"features": reference_features, "radii": metrics.kth_neighbour_radius(reference_features, 3)}
        floor_features = metrics.judge_features(judge, floor_images)
        floors[dataset] = {"fid": metrics.frechet_distance(reference_features, floor_features),
                           **metrics.precision_recall(reference_features, floor_features, 3, reference["radii"])}
        for _, kind, seed, beta in [c for c in configs if c[0] == dataset]:
            run_id = f"{dataset}-{train.run_name(kind, beta, 'mnist')}-seed{seed}"
            bar.set_postfix_str(f"{run_id}: training")
            path, train_seconds = train_run(dataset, kind, seed, splits, args, beta)
            bar.update()
            bar.set_postfix_str(f"{run_id}: evaluating")
            sha256 = file_sha256(path)
            cache_path = os.path.join(cache_dir, f"{run_id}{cache_suffix}.json")
            cached = cached_evaluation(cache_path, sha256, settings)
            if cached is None:
                t = time.perf_counter()
                result = evaluate_one(models.load_checkpoint(path), splits, judge, reference, args)
                cached = {"checkpoint_sha256": sha256, "settings": settings, **result,
                          "evaluate_seconds": time.perf_counter() - t}
                cli.write_atomically(cache_path, json.dumps(cached, indent=1) + "\n")
            bar.update()
            records.append({"dataset": dataset, "model": kind, "seed": seed, "beta": beta, "checkpoint": path,
                            "checkpoint_sha256": sha256,
                            "result": {k: v for k, v in cached.items() if k not in CACHE_BOOKKEEPING},
                            "train_seconds_this_invocation": round(train_seconds, 1),
                            "evaluate_seconds": round(cached["evaluate_seconds"], 1)})
    bar.close()
    return records, floors, settings


def study_main(args, command, started):
    configs = [(d, k, s, 1.0) for d in args.datasets for s in args.seeds for k in MODEL_KINDS]
    records, floors, settings = run_all(
        configs, args, lambda *a: dict(zip(("metrics", "samplers"), evaluate_run(*a))), "", "study")
    runs = [{**{k: r[k] for k in ("dataset", "model", "seed", "checkpoint", "checkpoint_sha256",
                                  "train_seconds_this_invocation", "evaluate_seconds")},
             "metrics": r["result"]["metrics"], "samplers": r["result"]["samplers"]} for r in records]
    summary, comparisons = summarise(runs), compare(runs)
    study = {"command": command, "seconds": round(time.perf_counter() - started, 1), "settings": settings,
             "seeds": args.seeds, "datasets": args.datasets, "floors": floors,
             "runs": runs, "summary": summary, "comparisons": comparisons}
    claims, samplers = claims_table(comparisons), samplers_table(summary, floors)
    header = (f"Made by `{command}` ({len(args.seeds)} seeds; {study['seconds']:.0f} s this time, "
              "cached runs not retrained). Means over seeds; intervals: 95 %, Student t.\n\n")
    cli.write_atomically(os.path.join(args.output_dir, "study.json"), json.dumps(study, indent=1) + "\n")
    cli.write_atomically(os.path.join(args.output_dir, "study.md"),
                         "# The study\n\n" + header + "## Claims\n\n" + claims + "\n## Samplers\n\n" + samplers)
    save_figure(os.path.join(args.output_dir, "study_samplers.png"), samplers_figure(summary, floors))
    if args.readme != "none":
        replace_readme_block(args.readme, claims + "\n" + samplers, "study")
    print(claims)
    return ["study.json", "study.md", "study_samplers.png"]


def sweep_main(args, command, started):
    dataset = args.datasets[0]
    configs = [(dataset, "autoencoder", s, None) for s in args.seeds] + \
              [(dataset, "vae", s, b) for b in args.betas for s in args.seeds]
    records, floors, settings = run_all(configs, args, evaluate_sweep_run, "-sweep", "beta sweep")
    runs = [{"dataset": r["dataset"], "model": r["model"], "beta": r["beta"], "seed": r["seed"],
             "checkpoint": r["checkpoint"], **r["result"], "train_seconds_this_invocation": r["train_seconds_this_invocation"],
             "evaluate_seconds": r["evaluate_seconds"]} for r in records]
    summary = summarise_sweep(runs)
    sweep = {"command": command, "seconds": round(time.perf_counter() - started, 1), "settings": settings,
             "dataset": dataset, "seeds": args.seeds, "betas": args.betas, "floor": floors[dataset],
             "runs": runs, "summary": summary}
    table = sweep_table(summary)
    cli.write_atomically(os.path.join(args.output_dir, "beta_sweep.json"), json.dumps(sweep, indent=1) + "\n")
    cli.write_atomically(os.path.join(args.output_dir, "beta_sweep.md"),
                         f"# The β continuum\n\nMade by `{command}` ({len(args.seeds)} seeds, {dataset}; "
                         f"{sweep['seconds']:.0f} s this time). Test set; means over seeds with 95 % intervals "
                         f"(Student t). IWAE: k = {args.iwae_k} on {args.iwae_images} test images.\n\n" + table)
    first_seed = min(args.seeds)
    shown = {r["beta"]: models.load_checkpoint(r["checkpoint"]) for r in records if r["seed"] == first_seed}
    test = data.load_dataset(dataset, args.data_dir)["test"]
    n = min(len(test), 5000)
    save_figure(os.path.join(args.output_dir, "beta_rate_distortion.png"), rate_distortion_figure(runs))
    save_figure(os.path.join(args.output_dir, "beta_latents.png"), sweep_row_figure(
        shown, draw_latent_scatter(test.images[:n], test.labels[:n]),
        f"{n:,} test codes (posterior means), seed {first_seed}: each panel on its own scale"))
    save_figure(os.path.join(args.output_dir, "beta_samples.png"), sweep_row_figure(
        shown, draw_prior_samples(), f"decoded z ~ N(0, I), seed {first_seed}"))
    if args.readme != "none":
        replace_readme_block(args.readme, table, "beta")
    print(table)
    return ["beta_sweep.json", "beta_sweep.md", "beta_rate_distortion.png", "beta_latents.png", "beta_samples.png"]


def save_figure(path, fig):
    from explore_latent_space import save_atomically
    save_atomically(path, fig)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, train.stop_on_sigterm)
    started = time.perf_counter()
    command = "python study.py" + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    import matplotlib
    matplotlib.use("Agg")  # files only
    try:
        cli.writable_dir(args.output_dir)
        written = (sweep_main if args.beta_sweep else study_main)(args, command, started)
    except (cli.UserError, data.DataError, models.CheckpointError) as e:
        cli.exit_with_error(str(e))
    except OSError as e:  # the machine's fault, not the user's: a full disk, a read-only or vanished folder
        cli.exit_with_error(cli.os_error_message(e))
    except KeyboardInterrupt as stop:
        print(f"\n{stop.args[0] if stop.args else 'interrupted'}: finished runs and evaluations are kept; "
              f"the same command continues (an unfinished run resumes from its last epoch)", file=sys.stderr)
        sys.exit(143 if stop.args and stop.args[0] == "terminated" else 130)
    print(f"written to {args.output_dir}/: {', '.join(written)} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()

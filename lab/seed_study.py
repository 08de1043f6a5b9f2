"""The study: which claims about the AutoEncoder and the VAE hold across training seeds?

Each claim is read off the paired differences VAE - AutoEncoder of the same seed, on one measure per row
(CLAIMS). Runs are trained and evaluated by runner.py; evaluate_run says what each run is scored on.
"""
import math
from argparse import Namespace

import torch

from lab import measures, samplers
from lab.evaluation import DEFAULTS, encode_splits, evaluate_model
from lab.judge import judge_samples
from lab.runner import RunConfig
from lab.sample_measures import measure_samples, reference_for
from lab.seed_statistics import mean_ci95, verdict

MODEL_KINDS = ("autoencoder", "vae")
SAMPLERS = ("prior", "gaussian", "gmm")  # N(0, I); a Gaussian fitted to the training codes; a 10-component mixture
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
DEFAULT_DATASETS = ["mnist", "binarized-mnist"]

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


def configurations(datasets, seeds):
    return [RunConfig(d, k, s, 1.0) for d in datasets for s in seeds for k in MODEL_KINDS]


def prepare(dataset, args):
    """What every run of a dataset is compared with: the judge, the test images' features, the floor."""
    return reference_for(dataset, args.data_dir, args.num_samples, args.device)


@torch.no_grad()
def own_grid(codes, grid_size=20):
    """A grid_size^2 grid over the box holding the central 99 % of the codes on each axis."""
    low, high = torch.quantile(codes.cpu(), torch.tensor([0.005, 0.995]), dim=0)
    return low + (high - low) * (measures.latent_grid(1.0, grid_size) + 1) / 2


@torch.no_grad()
def evaluate_run(model, splits, reference, args, seed=0):
    """Every measure of one trained model: evaluate.py's, the grid over its own codes, and for each sampler
    the Fréchet distance, precision and recall against the test images and the judge's verdicts."""
    eval_args = Namespace(**{**vars(DEFAULTS), "seed": seed, "iwae_k": args.iwae_k, "quadrature": True,
                             "iwae_images": args.iwae_images, "num_samples": args.num_samples})
    codes = encode_splits(model, splits)  # once per run: the fitted samplers and evaluate_model share them
    result = evaluate_model(model, splits, reference["judge"], eval_args, codes)
    grid = own_grid(codes["test"]).to(codes["test"].device)
    result["own_grid_confident"] = judge_samples(reference["judge"], model.decode(grid))["confident"]
    # the fitted samplers see the training codes as the model saw its training images (VAE: posterior means)
    sampler_of = {
        "prior": samplers.prior_sampler(model.latent_dim, seed),
        "gaussian": samplers.fitted_gaussian_sampler(codes["train"], seed),
        "gmm": samplers.fitted_mixture_sampler(codes["train"], components=10, seed=seed),
    }
    return {"metrics": result,
            "samplers": {name: measure_samples(model, sample(args.num_samples), reference)
                         for name, sample in sampler_of.items()}}


# ---- aggregate ----

def summarise(runs):
    """Mean and 95 % interval over seeds of every measure, per (dataset, model, sampler); a measure a run could
    not take (None, with a note beside it, such as quadrature_skipped) is left out, so n says how many remain."""
    groups = {}

    def add(key, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            groups.setdefault(key, []).append(value)
    for run in runs:
        for metric, value in run["metrics"].items():
            add((run["dataset"], run["model"], None, metric), value)
        for sampler, sample_results in run["samplers"].items():
            for metric, value in sample_results.items():
                add((run["dataset"], run["model"], sampler, metric), value)
    summary = []
    for (dataset, model, sampler, metric), values in groups.items():
        mean, ci = mean_ci95(values)
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
            mean, ci = mean_ci95([v - a for a, v in pairs])
            comparisons.append({"dataset": dataset, "claim": claim, "metric": metric, "sampler": sampler,
                                "n": len(pairs), "direction": "VAE > AE" if direction > 0 else "VAE < AE",
                                "autoencoder_mean": sum(a for a, _ in pairs) / len(pairs),
                                "vae_mean": sum(v for _, v in pairs) / len(pairs),
                                "mean_difference": mean, "ci95": list(ci), "verdict": verdict(ci, direction)})
    return comparisons

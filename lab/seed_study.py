"""The study: which claims about the AutoEncoder and the VAE hold across training seeds?

Each claim is read off the paired differences VAE - AutoEncoder of the same seed, on one measure per row
(CLAIMS). Runs are trained and evaluated by runner.py; evaluate_run says what each run is scored on.
"""
import math
import statistics
from dataclasses import dataclass

import torch

from lab import measures, samplers
from lab.config import EvalConfig
from lab.evaluation import encode_splits, evaluate_model
from lab.judge import judge_samples
from lab.runner import RunConfig
from lab.sample_measures import measure_samples, reference_for
from lab import seed_statistics as stats

from lab.names import MODEL_KINDS, SAMPLERS  # noqa: E402,F401 (the reports use them too)
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
DEFAULT_DATASETS = ["mnist", "binarized-mnist"]



@dataclass(frozen=True)
class Claim:
    """A claim about VAE vs AutoEncoder, read off one primary measure (metric, sampler or None); direction is
    the sign VAE - AE has when the claim is right, margin (equivalence claims) the difference on the primary
    measure small enough to call the two the same. Secondary measures are reported beside it, without verdict."""
    text: str
    metric: str
    sampler: str
    direction: int
    reason: str
    secondary: tuple = ()  # ((metric, sampler, direction), ...)
    margin: float = None


# Fixed before the runs: the primary measure of each claim, and the equivalence margin.
CLAIMS = [
    Claim("the VAE's codes are closer to N(0, I)", "mmd2_to_prior", None, -1,
          "a distance between the test codes' distribution and N(0, I) itself, not a summary of it"),
    Claim("the VAE's prior samples are better", "fid", "prior", -1,
          "the field's measure of sample quality and diversity at once (in the judge's features)",
          secondary=(("density", "prior", +1), ("coverage", "prior", +1), ("precision", "prior", +1),
                     ("confident", "prior", +1), ("class_entropy_bits", "prior", +1))),
    Claim("the AutoEncoder has more meaningless regions", "own_grid_confident", None, +1,
          "a grid over each model's own codes: a fixed box would favour whichever model's codes fill it",
          secondary=(("grid_confident", None, +1),)),
    Claim("reconstructions cost the VAE something", "recon", None, +1,
          "the reconstruction a user gets (the VAE at its posterior mean), in nats like the likelihoods",
          secondary=(("recon_sampled_z", None, +1), ("ink_f1", None, -1))),
    # Ghosh et al. (2020): a density fitted to an AutoEncoder's codes samples like a VAE. The margin, 25 in
    # Fréchet distance, is a fifth of the prior sampler's effect (~120 on both datasets in the 5-seed study)
    Claim("with a fitted mixture the AutoEncoder samples as well as the VAE", "fid", "gmm", 0,
          "the same measure as the prior-sample claim, so the two effects compare",
          secondary=(("density", "gmm", 0), ("coverage", "gmm", 0), ("confident", "gmm", 0)), margin=25.0),
]


def configurations(datasets, seeds):
    return [RunConfig(d, k, s, 1.0) for d in datasets for s in seeds for k in MODEL_KINDS]


# how the study evaluates each run (study.py's flags set the draws, images and samples; --quick makes them small)
EVALUATION = EvalConfig(iwae_draws=20, quadrature=True)


def prepare(dataset, study):
    """What every run of a dataset is compared with: the judge, the test images' features, the floor."""
    return reference_for(dataset, study.data_dir, study.evaluation.num_samples, study.device,
                         study.dataset_spec(dataset), study.checkpoint_dir)


@torch.no_grad()
def own_grid(codes, grid_size=20):
    """A grid_size^2 grid over the box holding the central 99 % of the codes on each axis."""
    low, high = torch.quantile(codes.cpu(), torch.tensor([0.005, 0.995]), dim=0)
    return low + (high - low) * (measures.latent_grid(1.0, grid_size) + 1) / 2


@torch.no_grad()
def evaluate_run(model, splits, reference, study):
    """Every measure of one trained model: evaluate.py's, the grid over its own codes, and for each sampler
    the Fréchet distance, density, coverage and precision against the test images and the judge's verdicts."""
    evaluation = study.evaluation
    seed, num_samples = evaluation.sample_seed, evaluation.num_samples
    codes = encode_splits(model, splits)  # once per run: the fitted samplers and evaluate_model share them
    result = evaluate_model(model, splits, reference["judge"], evaluation, codes)
    grid = own_grid(codes["test"]).to(codes["test"].device)
    result["own_grid_confident"] = judge_samples(reference["judge"], model.decode(grid))["confident"]
    # the fitted samplers see the training codes as the model saw its training images (VAE: posterior means)
    sampler_of = {
        "prior": samplers.prior_sampler(model.latent_dim, seed),
        "gaussian": samplers.fitted_gaussian_sampler(codes["train"], seed),
        "gmm": samplers.fitted_mixture_sampler(codes["train"], components=10, seed=seed),
    }
    return {"metrics": result,
            "samplers": {name: measure_samples(model, sample(num_samples), reference)
                         for name, sample in sampler_of.items()}}


# ---- aggregate ----

def statistics_of(runs):
    """Everything study.json derives from its runs' values: the summaries, the comparisons and verdicts, the
    diverged runs, and the verdicts once more without their seeds (study.py --report_only recomputes them with
    this code from the JSON's runs alone)."""
    result = {"summary": summarise(runs), "comparisons": compare(runs), "diverged": diverged(runs)}
    if result["diverged"]:
        result["comparisons_without_diverged"] = compare(without_seeds_of(runs, result["diverged"]))
    return result


def summarise(runs):
    """Mean, 95 % t interval (seed_statistics.over_seeds) and every seed's value of each measure, per
    (dataset, model, sampler); a measure a run could not take (None, with a note beside it, such as nll_skipped)
    is left out, so n says how many remain."""
    groups = {}

    def add(key, seed, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            groups.setdefault(key, {})[seed] = value
    for run in runs:
        for metric, value in run["metrics"].items():
            add((run["dataset"], run["model"], None, metric), run["seed"], value)
        for sampler, sample_results in run["samplers"].items():
            for metric, value in sample_results.items():
                add((run["dataset"], run["model"], sampler, metric), run["seed"], value)
    summary = []
    for (dataset, model, sampler, metric), by_seed in groups.items():
        values = [by_seed[s] for s in sorted(by_seed)]
        summary.append({"dataset": dataset, "model": model, "sampler": sampler, "metric": metric,
                        **stats.over_seeds(values), "seeds": sorted(by_seed)})
    return summary


DIVERGED_NATS = 5.0  # a run whose test objective is this far above its group's median (and 10 MADs) diverged


def diverged(runs):
    """The runs whose test objective (recon + beta * KL, nats) lies far above that of the other seeds of the same
    dataset and model: more than DIVERGED_NATS and 10 median absolute deviations above the median. Clipping
    should prevent them; the study reports any, and its verdicts with and without their seeds."""
    groups = {}
    for run in runs:
        value = run["metrics"].get("objective")
        if isinstance(value, (int, float)) and math.isfinite(value):
            groups.setdefault((run["dataset"], run["model"]), []).append((run["seed"], value))
    found = []
    for (dataset, model), seeds in groups.items():
        values = sorted(v for _, v in seeds)
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        found += [{"dataset": dataset, "model": model, "seed": seed, "objective": value, "median": median}
                  for seed, value in seeds if value > median + max(DIVERGED_NATS, 10 * mad)]
    non_finite = [{"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "objective": None, "median": None}
                  for r in runs if not (isinstance(r["metrics"].get("objective"), (int, float))
                                        and math.isfinite(r["metrics"]["objective"]))]
    return found + non_finite


def without_seeds_of(runs, diverged_runs):
    """runs less both models of each seed that has a diverged run (the comparisons are paired by seed)."""
    dropped = {(d["dataset"], d["seed"]) for d in diverged_runs}
    return [r for r in runs if (r["dataset"], r["seed"]) not in dropped]


def run_value(run, metric, sampler):
    return run["samplers"].get(sampler, {}).get(metric) if sampler else run["metrics"].get(metric)


def paired_differences(by_seed, metric, sampler):
    """{seed: VAE - AE} over the seeds where both runs have the measure."""
    seeds = sorted(s for m, s in by_seed if m == "vae" and ("autoencoder", s) in by_seed)
    pairs = {s: (run_value(by_seed["autoencoder", s], metric, sampler), run_value(by_seed["vae", s], metric, sampler))
             for s in seeds}
    def usable(value):
        return isinstance(value, (int, float)) and math.isfinite(value)
    return {s: (a, v) for s, (a, v) in pairs.items() if usable(a) and usable(v)}


def compare(runs):
    """One object per claim, measure and dataset: the paired differences VAE - AE over seeds, their mean, 95 %
    interval (Student t) and every seed's value; for the primary measure the test's p, its Holm-adjusted p
    (across the claims of the dataset), the verdict (seed_statistics.verdict) and, for a superiority claim,
    mde80, the smallest mean difference the paired t test detects with power 0.8 at Holm's strictest level
    (alpha / the dataset's number of claims) with these seeds' spread; for an equivalence claim the 90 %
    interval and the margin (TOST) instead. Secondary measures carry no p, no verdict and no mde80 (None)."""
    comparisons = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        by_seed = {(r["model"], r["seed"]): r for r in runs if r["dataset"] == dataset}
        rows = []
        for claim in CLAIMS:
            measures_of_claim = [(claim.metric, claim.sampler, claim.direction, True)] + \
                [(m, s, d, False) for m, s, d in claim.secondary]
            for metric, sampler, direction, primary in measures_of_claim:
                pairs = paired_differences(by_seed, metric, sampler)
                if not pairs:
                    continue
                differences = [v - a for a, v in pairs.values()]
                mean, ci = stats.mean_ci95(differences)
                row = {"dataset": dataset, "claim": claim.text, "measure": metric, "metric": metric,
                       "sampler": sampler, "primary": primary, "n": len(pairs),
                       "direction": {1: "VAE > AE", -1: "VAE < AE", 0: "VAE = AE"}[direction],
                       "autoencoder_mean": sum(a for a, _ in pairs.values()) / len(pairs),
                       "vae_mean": sum(v for _, v in pairs.values()) / len(pairs),
                       "mean": mean, "ci95": list(ci), "seeds": list(pairs), "differences": differences,
                       "p": None, "p_holm": None, "verdict": None, "mde80": None}
                if primary:
                    row["reason"] = claim.reason
                    if claim.margin is not None:
                        row["margin"] = claim.margin
                        row["ci90"] = list(stats.mean_ci95(differences, level=0.90)[1])
                        row["p"] = stats.tost_p(differences, claim.margin)
                    else:
                        row["p"] = stats.t_test_p(differences)
                rows.append(row)
        primaries = [r for r in rows if r["primary"]]
        for row, adjusted in zip(primaries, stats.holm([r["p"] for r in primaries])):
            claim = next(c for c in CLAIMS if c.text == row["claim"])
            row["p_holm"] = adjusted
            row["verdict"] = stats.verdict(row["mean"], adjusted, claim.direction, claim.margin, row.get("ci90"))
            if claim.margin is None:  # an equivalence test's power is another question; its margin is shown instead
                row["mde80"] = stats.paired_minimum_detectable_difference(row["differences"],
                                                                          stats.ALPHA / len(primaries))
        comparisons += rows
    return comparisons

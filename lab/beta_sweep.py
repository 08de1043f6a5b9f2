"""The β continuum from AutoEncoder to VAE: VAEs trained with KL weights from 0 (an AutoEncoder with noisy
codes) to 8 (towards posterior collapse), scored by rate and distortion (Alemi et al. 2018), the ELBO and IWAE
bounds, active dimensions, the codes' distance to N(0, I) and their prior samples."""
import math

import torch

import data
from lab import measures, samplers
from lab.config import EvalConfig
from lab.runner import RunConfig
from lab.sample_measures import measure_samples, reference_for
from lab.seed_statistics import over_seeds
from models import encode_in_batches

BETAS = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]  # from an AutoEncoder with noisy codes to posterior collapse
DEFAULT_SEEDS = [0, 1, 2]
SWEEP_MEASURES = ("rate_nats", "distortion_nats", "neg_elbo_nats", "iwae_nll", "nll_nats", "active_dims",
                  "mmd2_to_prior", "fid", "density", "coverage", "precision", "confident")


def configurations(dataset, seeds, betas):
    """The AutoEncoder (beta None) and one VAE per beta, for each seed."""
    return [RunConfig(dataset, "autoencoder", s, None) for s in seeds] + \
           [RunConfig(dataset, "vae", s, b) for b in betas for s in seeds]


EVALUATION = EvalConfig(iwae_draws=20, quadrature=True)  # how the sweep evaluates each run (study.py's flags as for the study)


def prepare(dataset, study):
    return reference_for(dataset, study.data_dir, study.evaluation.num_samples, study.device,
                         study.dataset_spec(dataset), study.checkpoint_dir)


@torch.no_grad()
def evaluate_run(model, splits, reference, study):
    """Rate and distortion (Alemi et al. 2018), the ELBO and IWAE bounds, active dimensions, the codes' distance
    to N(0, I) and the prior samples' measures of one model of the sweep."""
    evaluation = study.evaluation
    seed = evaluation.sample_seed
    n = min(evaluation.iwae_images, len(splits["test"]))
    test = data.Split(splits["test"].images[:n], splits["test"].labels[:n])  # every bound on the same images
    terms = measures.evaluate_split(model, test)
    codes = encode_in_batches(model, test.images)
    result = {"images": n, "distortion_nats": terms["loss_recon"], "rate_nats": terms.get("loss_kl"),
              "neg_elbo_nats": None, "iwae_nll": None, "nll_nats": None,
              "active_dims": measures.active_dimensions(codes),
              "mmd2_to_prior": measures.prior_match(codes, seed=seed)["mmd2_to_prior"]}
    if model.kind == "vae":
        bounds = measures.likelihood_bounds(model, test.images, k=evaluation.iwae_draws, seed=seed,
                                            quadrature=evaluation.quadrature)
        result |= {"neg_elbo_nats": bounds["neg_elbo"], "iwae_nll": bounds["iwae_nll"], "nll_nats": bounds.get("nll"),
                   "iwae_ess": bounds["iwae_ess"], "iwae_low_ess_share": bounds["iwae_low_ess_share"]}
        if "quadrature_step_error_nats" in bounds:  # what the quadrature's -log p(x) is exact to (measures.py)
            result["quadrature_step_error_nats"] = bounds["quadrature_step_error_nats"]
        if "nll_skipped" in bounds:
            result["nll_skipped"] = bounds["nll_skipped"]
    prior = samplers.prior_sampler(model.latent_dim, seed)(evaluation.num_samples)
    return result | measure_samples(model, prior, reference)


def summarise_sweep(runs):
    """Mean, 95 % t interval (seed_statistics.over_seeds) and every seed's value, per beta and measure."""
    groups = {}
    for run in runs:
        for metric in SWEEP_MEASURES:
            # None: not defined for this model (the AutoEncoder's rate) or not computable (nll_skipped says
            # why) -- left out, so n says how many remain
            if run.get(metric) is not None and math.isfinite(run[metric]):
                groups.setdefault((run["beta"], metric), {})[run["seed"]] = run[metric]
    summary = []
    for (beta, metric), by_seed in groups.items():
        values = [by_seed[s] for s in sorted(by_seed)]
        summary.append({"beta": beta, "metric": metric, **over_seeds(values), "seeds": sorted(by_seed)})
    return summary

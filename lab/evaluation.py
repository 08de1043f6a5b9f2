"""Every measure of one trained AutoEncoder or VAE, as evaluate.py's report lists them (the study adds its
sample measures on top, seed_study.py)."""
import torch

import models
from lab import measures, samplers
from lab.config import EvalConfig
from lab.judge import judge_samples

DEFAULTS = EvalConfig()  # what evaluate.py computes unless its flags say otherwise


@torch.no_grad()
def encode_splits(model, splits, split="test"):
    """The codes of the training images (as the model saw them: one fixed binarisation for binarised MNIST) and
    of the evaluated split; the VAE's are posterior means. Computed once per model and shared by every measure."""
    return {"train": models.encode_in_batches(model, splits["train"].sample_images()),
            split: models.encode_in_batches(model, splits[split].images)}


@torch.no_grad()
def evaluate_model(model, splits, judge, evaluation=DEFAULTS, codes=None):
    """Every measure of one trained AE or VAE as the EvalConfig `evaluation` says, as a flat dict (codes:
    encode_splits' result, if at hand; judge None: without the measures of judged samples).

    objective: what training minimised (the AutoEncoder's cross-entropy; the VAE's recon + beta * KL, or its
    IWAE bound); recon: the reconstruction cross-entropy at the code the model gives an image (the VAE's
    posterior mean), the one number both models share; the VAE adds recon_sampled_z and rate (its ELBO's two
    terms), and neg_elbo >= iwae_nll_k<K> >= nll on the same first bound_images images."""
    e = evaluation
    split = e.split
    test = splits[split]
    device = test.images.device
    codes = codes or encode_splits(model, splits, split)
    train_codes, test_codes = codes["train"], codes[split]
    terms = measures.evaluate_split(model, test)
    result = {"objective": terms["loss_total"], "recon": measures.reconstruction_nats(model, test.images)}
    if model.kind == "vae":
        result |= {"recon_sampled_z": terms["loss_recon"], "rate": terms["loss_kl"]}
    result |= measures.reconstruction_metrics(measures.reconstruct_in_batches(model, test.images), test.images)
    if model.kind == "vae" and e.likelihood:
        n = min(e.iwae_images, len(test))
        bounds = measures.likelihood_bounds(model, test.images[:n], k=e.iwae_draws, seed=e.sample_seed,
                                            quadrature=e.quadrature)
        result |= {"neg_elbo": bounds.pop("neg_elbo"), f"iwae_nll_k{e.iwae_draws}": bounds.pop("iwae_nll"),
                   "bound_images": n, **bounds}
    if (test.labels >= 0).all():  # a user's unlabelled images: no classes to recover
        result["knn5_accuracy"] = measures.knn_accuracy(train_codes, splits["train"].labels, test_codes, test.labels, k=5)
    result |= measures.prior_match(test_codes, seed=e.sample_seed)
    if judge is None:  # no judge for these images: the sample measures are left out (evaluate.py says why)
        return result

    prior_codes = samplers.prior_sampler(model.latent_dim, e.sample_seed)(e.num_samples).to(device)
    result |= {f"prior_samples_{k}": v for k, v in judge_samples(judge, model.decode(prior_codes)).items()}
    if model.latent_dim == 2:
        grid = measures.latent_grid(e.grid_range, e.grid_size).to(device)
        result["grid_confident"] = judge_samples(judge, model.decode(grid))["confident"]
    if model.kind == "autoencoder":
        # the fair way to sample an AutoEncoder: a Gaussian fitted to its training codes
        fitted = samplers.fitted_gaussian_sampler(train_codes, e.sample_seed)(e.num_samples).to(device)
        result |= {f"fitted_gaussian_samples_{k}": v for k, v in judge_samples(judge, model.decode(fitted)).items()}
    return result


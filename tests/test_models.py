import os

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import data
import models
from lab import measures
from conftest import DATA_DIR, ROOT

TINY = dict(hidden_dims=[32, 16], latent_dim=2)


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
@pytest.mark.parametrize("latent_dim", [2, 5])
def test_encode_and_decode_have_the_contract_shapes(kind, latent_dim):
    model = models.build_model(kind, hidden_dims=[32], latent_dim=latent_dim)
    x = torch.rand(7, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (7, latent_dim)
    out = model.decode(z)
    assert out.shape == (7, 1, 28, 28)
    assert (out >= 0).all() and (out <= 1).all()
    assert model.kind == kind


def test_vae_encode_is_the_posterior_mean():
    model = models.VAE(**TINY)
    x = torch.rand(4, 1, 28, 28)
    mu, logvar = model.encode_dist(x)
    assert mu.shape == logvar.shape == (4, 2)
    assert torch.equal(model.encode(x), mu)


def test_closed_form_kl_equals_torch_distributions():
    mu, logvar = torch.randn(50, 3), torch.randn(50, 3)
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros(3), torch.ones(3))
    expected = kl_divergence(q, p).sum(1)
    assert torch.allclose(models.gaussian_kl(mu, logvar), expected, atol=1e-5)


def test_autoencoder_loss_is_bce_summed_over_pixels_averaged_over_images():
    model = models.AutoEncoder(**TINY)
    x = torch.rand(6, 1, 28, 28)
    expected = F.binary_cross_entropy(model.reconstruct(x), x, reduction="sum") / 6
    terms = model.loss(x)
    assert torch.allclose(terms["total"], expected, rtol=1e-4)
    assert torch.equal(terms["total"], terms["recon"])


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_vae_loss_is_reconstruction_plus_beta_times_kl_recomputed_by_hand(beta):
    """An independent oracle: the same draw of eps, then torch.distributions' KL and binary cross-entropy on
    probabilities, not the model's own formulas."""
    model = models.VAE(**TINY, beta=beta)
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(3)
    terms = model.loss(x)
    torch.manual_seed(3)
    mu, logvar = model.encode_dist(x)
    z = mu + logvar.mul(0.5).exp() * torch.randn_like(mu)
    recon = F.binary_cross_entropy(model.decode(z), x, reduction="sum") / len(x)
    kl = kl_divergence(Normal(mu, logvar.mul(0.5).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert torch.allclose(terms["recon"], recon, rtol=1e-4) and torch.allclose(terms["kl"], kl, rtol=1e-4)
    assert torch.allclose(terms["total"], recon + beta * kl, rtol=1e-4)


def test_reconstruction_gradient_reaches_the_encoder_variance_through_sampling():
    model = models.VAE(**TINY)
    x = torch.rand(6, 1, 28, 28)
    model.loss(x)["recon"].backward()  # the KL term alone would also reach logvar; leave it out
    last = model.encoder[-1]
    logvar_rows = last.weight.grad[TINY["latent_dim"]:]
    assert logvar_rows.abs().sum() > 0
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_output_bias_starts_the_decoder_at_the_mean_image():
    model = models.AutoEncoder(**TINY)
    mean_image = torch.rand(1, 28, 28) * 0.8 + 0.1
    model.init_output_bias(mean_image)
    torch.nn.init.zeros_(model.decoder[-1].weight)
    assert torch.allclose(model.decode(torch.zeros(1, 2))[0], mean_image, atol=1e-5)


def test_a_softplus_scale_is_the_standard_deviation_and_stays_finite_where_softplus_underflows(tmp_path):
    vae = models.VAE(**TINY, posterior_scale="softplus")
    with torch.no_grad():
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.copy_(torch.tensor([0.3, -0.2, 0.5, -200.0]))  # mu, then the scale's pre-activations
    mu, logvar = vae.encode_dist(torch.rand(3, 1, 28, 28))
    assert torch.allclose(mu, torch.tensor([0.3, -0.2]).expand(3, 2))
    assert torch.allclose(torch.exp(0.5 * logvar[:, 0]), F.softplus(torch.tensor(0.5)).expand(3))
    assert torch.allclose(logvar[:, 1], torch.tensor(-400.0))  # softplus(-200) is 0 in float32; its log is not
    vae.loss(torch.rand(4, 1, 28, 28))["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters())
    # stored with the checkpoint, rebuilt from the file alone; the default is not stored (older readers read it)
    models.save_checkpoint(tmp_path / "s.pt", vae)
    assert models.load_checkpoint(tmp_path / "s.pt").posterior_scale == "softplus"
    assert "posterior_scale" not in models.VAE(**TINY).model_args
    with pytest.raises(ValueError, match="posterior_scale"):
        models.VAE(**TINY, posterior_scale="exp")


def test_tensorflow_init_gives_glorot_uniform_weights_and_zero_biases():
    torch.manual_seed(0)
    model = models.VAE(hidden_dims=[256, 128])
    models.tensorflow_init(model)
    for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        limit = (6 / (layer.in_features + layer.out_features)) ** 0.5
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max() <= limit and layer.weight.abs().max() > 0.95 * limit
        # uniform on [-limit, limit]: variance limit^2 / 3, where PyTorch's default is 1 / (3 fan_in)
        assert layer.weight.var().item() == pytest.approx(limit ** 2 / 3, rel=0.1)


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_checkpoint_round_trips_to_identical_outputs(tmp_path, kind):
    model = models.build_model(kind, hidden_dims=[24, 12], latent_dim=3, activation="leaky_relu").eval()
    path = tmp_path / "m.pt"
    models.save_checkpoint(path, model, epoch=3)
    loaded = models.load_checkpoint(path)
    assert not loaded.training and loaded.kind == kind
    assert loaded.model_args == model.model_args
    x = torch.rand(5, 1, 28, 28)
    z = torch.randn(5, 3)
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.equal(loaded.decode(z), model.decode(z))
    assert not list(tmp_path.glob("*.tmp*")), "the temporary file of the atomic write was left behind"


def test_importance_weighted_loss_with_one_sample_is_the_elbo_on_the_same_draw():
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[32])
    x = torch.rand(16, 1, 28, 28)
    mu, logvar = vae.encode_dist(x)
    torch.manual_seed(1)
    iwae = vae.importance_weighted_loss(x, mu, logvar, k=1)
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(1, *mu.shape)
    q, p = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0)
    sampled_kl = (q.log_prob(z[0]) - p.log_prob(z[0])).sum(1)
    recon = models.bernoulli_cross_entropy(vae.decode_logits(z[0]), x)
    assert iwae["total"].item() == pytest.approx((recon + sampled_kl).mean().item(), rel=1e-5)
    # and in expectation the plain loss with its closed-form KL
    plain = torch.stack([vae.loss(x)["total"] for _ in range(400)]).mean()
    sampled = torch.stack([vae.importance_weighted_loss(x, mu, logvar, k=1)["total"] for _ in range(400)]).mean()
    assert sampled.item() == pytest.approx(plain.item(), rel=2e-3)


def test_importance_weighted_loss_is_never_above_the_mean_one_sample_elbo_of_its_draws():
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[32])
    x = torch.rand(16, 1, 28, 28)
    mu, logvar = vae.encode_dist(x)
    for seed in range(5):
        torch.manual_seed(seed)
        iwae = vae.importance_weighted_loss(x, mu, logvar, k=10)
        # the same 10 draws, each scored as a one-sample ELBO: recon + kl are their means
        assert iwae["elbo"].item() == pytest.approx((iwae["recon"] + iwae["kl"]).item())
        assert iwae["total"].item() <= iwae["elbo"].item() + 1e-4


def test_importance_weighted_training_reaches_the_encoder_and_refuses_other_betas():
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[32], iwae_k=5)
    vae.loss(torch.rand(8, 1, 28, 28))["total"].backward()
    assert vae.encoder[0].weight.grad.abs().sum() > 0
    assert vae.model_args["iwae_k"] == 5 and "iwae_k" not in models.VAE().model_args
    with pytest.raises(ValueError):
        models.VAE(beta=2.0, iwae_k=5)


@pytest.mark.slow
def test_committed_best_likelihood_checkpoints_are_2d_vaes_of_one_recipe_that_beat_the_default_run():
    # docs/binarized-mnist.md "The best 2-D likelihood": on the same test images with the same importance
    # samples, each of the three committed seeds of the best recipe has the lower -log p(x) estimate
    from lab import training
    paths = [os.path.join(ROOT, "checkpoints", "binarized-mnist_vae_best.pt")] + \
        [os.path.join(ROOT, "checkpoints", "best", f"binarized-mnist_vae_best_seed{s}.pt") for s in (1, 2)]
    default = models.load_checkpoint(os.path.join(ROOT, "checkpoints", "binarized-mnist_vae.pt"))
    test_images = data.load_dataset("binarized-mnist", DATA_DIR)["test"].images[:500]
    with torch.no_grad():
        default_nll = measures.iwae_nll_of_split(default, test_images, k=100)
    checkpoints = [models.read_checkpoint(p) for p in paths]
    assert len({training.recipe_of(c) for c in checkpoints}) == 1
    assert [c["config"]["seed"] for c in checkpoints] == [0, 1, 2]
    for path in paths:
        best = models.load_checkpoint(path)
        assert best.kind == "vae" and not best.training
        assert best.model_args["latent_dim"] == 2 and best.model_args["iwae_k"] == 5
        with torch.no_grad():
            best_nll = measures.iwae_nll_of_split(best, test_images, k=100)
        assert 100 < best_nll < default_nll - 1, (path, best_nll, default_nll)

"""Ways to draw codes for a model: its prior, or a density fitted to its training codes afterwards.

N(0, I) is the VAE's own generative model but a prior the AutoEncoder never saw; a Gaussian or a mixture
fitted to a model's codes samples either model fairly (Ghosh et al. 2020).
"""
import torch


def prior_sampler(latent_dim, seed=0):
    """A function n -> n codes drawn (with a fixed seed) from N(0, I)."""
    return lambda n: torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


def fitted_gaussian_sampler(codes, seed=0):
    """A function n -> n codes drawn (with a fixed seed) from the Gaussian with the mean and covariance of `codes`."""
    codes = codes.cpu().double()
    mean, cholesky = codes.mean(0), torch.linalg.cholesky(torch.cov(codes.T).reshape(codes.shape[1], codes.shape[1]))

    def sample(n):
        eps = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return (mean + eps @ cholesky.T).float()
    return sample


def fitted_mixture_sampler(codes, components=10, seed=0):
    """A function n -> n codes drawn (with a fixed seed) from a Gaussian mixture fitted to `codes` by EM (scikit-learn).

    Ghosh et al. (2020), "From Variational to Deterministic Autoencoders": an autoencoder becomes a
    generative model once a density is fitted to its codes after training (ex-post density estimation).
    """
    from sklearn.mixture import GaussianMixture
    mixture = GaussianMixture(components, covariance_type="full", random_state=seed).fit(codes.cpu().double().numpy())

    def sample(n):
        z, _ = mixture.sample(n)  # drawn from random_state=seed; grouped by component, hence the shuffle
        return torch.from_numpy(z).float()[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    return sample

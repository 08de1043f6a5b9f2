"""The two models compared by this project: a plain AutoEncoder and a Variational AutoEncoder.

Both share one interface, so training, plotting and metrics never branch on the kind except
where the maths differs:

    model.encode(x)   images B x C x H x W in [0, 1] -> codes B x latent_dim (the VAE: the mean)
    model.decode(z)   codes -> pixel probabilities B x C x H x W
                      (C x H x W: model.image_shape, 1 x 28 x 28 for the MNIST family)
    model.loss(x)     dict of named loss terms, each in nats per image, averaged over the batch
    model.kind        "autoencoder" or "vae"

Losses treat each pixel as a Bernoulli variable whose target is the grey level in [0, 1]
(as the original project did). With non-binary targets this cross-entropy is not a normalised
log-likelihood, so its values compare with each other, not with papers that binarise MNIST.
"""
import io
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_SHAPE = (1, 28, 28)  # the MNIST family's; a model of other images stores its own in model_args
CHECKPOINT_FORMAT_VERSION = 1

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,  # the original project's choice
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def mlp(sizes, activation):
    """Linear layers of the given sizes with `activation` between them (none after the last)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def bernoulli_cross_entropy(logits, x):
    """Cross-entropy of the images x under per-pixel Bernoulli(sigmoid(logits)), nats per image.

    logits: ... x B x 784 (leading dimensions, e.g. several samples per image, broadcast over x without a copy).
    """
    target = x.flatten(-3).expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)


class AutoEncoder(nn.Module):
    kind = "autoencoder"

    def __init__(self, hidden_dims=(256, 256, 256), latent_dim=2, activation="gelu", image_shape=IMAGE_SHAPE):
        super().__init__()
        self.model_args = dict(hidden_dims=list(hidden_dims), latent_dim=latent_dim, activation=activation)
        if tuple(image_shape) != IMAGE_SHAPE:  # stored only when needed: MNIST checkpoints stay as every version reads them
            self.model_args["image_shape"] = list(image_shape)
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        pixels = math.prod(self.image_shape)  # every channel of every pixel: one Bernoulli output each
        self.encoder = mlp([pixels, *hidden_dims, self.encoder_outputs()], activation)
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), pixels], activation)

    def encoder_outputs(self):
        return self.latent_dim

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode_logits(self, z):
        return self.decoder(z)

    def decode(self, z):
        return torch.sigmoid(self.decode_logits(z)).view(-1, *self.image_shape)

    def reconstruct(self, x):
        """Deterministic reconstruction (pixel probabilities): decode the code of x."""
        return self.decode(self.encode(x))

    def init_output_bias(self, mean_image):
        """Start the decoder at the mean training image (logit of the mean pixel intensity).

        Without this the first hundred steps are spent learning that most pixels are black.
        """
        p = mean_image.flatten().clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))

    def loss(self, x):
        recon = bernoulli_cross_entropy(self.decode_logits(self.encode(x)), x).mean()
        return {"total": recon, "recon": recon}


# how the VAE's encoder gives the posterior's scale: logvar, its output is log sigma^2 (Kingma & Welling's);
# softplus, sigma = softplus(output) (Davidson et al. 2018's code). Either way encode_dist gives (mu, log sigma^2)
POSTERIOR_SCALES = ("logvar", "softplus")


def tensorflow_init(model):
    """Glorot-uniform weights and zero biases for every layer: TensorFlow's defaults (Davidson et al. 2018's
    s-vae-tf), where PyTorch's nn.Linear starts from Kaiming-uniform weights and biases."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class VAE(AutoEncoder):
    """Kingma & Welling (2014), "Auto-Encoding Variational Bayes", with a N(0, I) prior.

    The encoder outputs the mean and log-variance of a diagonal Gaussian q(z|x). The loss is the
    negative evidence lower bound with a weight beta on its KL term (beta = 1: the plain ELBO;
    Higgins et al. 2017 for beta != 1):  E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)).
    """
    kind = "vae"

    def __init__(self, hidden_dims=(256, 256, 256), latent_dim=2, activation="gelu", beta=1.0, iwae_k=1,
                 image_shape=IMAGE_SHAPE, posterior_scale="logvar"):
        super().__init__(hidden_dims, latent_dim, activation, image_shape)
        if iwae_k > 1 and beta != 1:
            raise ValueError("the importance-weighted objective (iwae_k > 1) is defined for beta = 1 only")
        if posterior_scale not in POSTERIOR_SCALES:
            raise ValueError(f"posterior_scale must be one of {', '.join(POSTERIOR_SCALES)}, not {posterior_scale!r}")
        self.model_args["beta"] = beta
        self.beta = beta
        if iwae_k != 1:  # stored only when used: a plain-ELBO checkpoint's arguments stay those every version reads
            self.model_args["iwae_k"] = iwae_k
        self.iwae_k = iwae_k
        if posterior_scale != "logvar":  # the same: stored only when it is not the default
            self.model_args["posterior_scale"] = posterior_scale
        self.posterior_scale = posterior_scale

    def encoder_outputs(self):
        return 2 * self.latent_dim  # mean and log-variance (or the scale's pre-activation)

    def encode_dist(self, x):
        mu, out = self.encoder(x.flatten(1)).chunk(2, dim=1)
        if self.posterior_scale == "softplus":
            # sigma = softplus(out), Davidson et al.'s Gaussian VAE; log sigma^2 by the identity log softplus(u) = u
            # for u far below 0, where softplus underflows to 0 and its log (and gradient) would be -inf (nan)
            return mu, 2 * torch.where(out <= -20, out, torch.log(F.softplus(out.clamp(min=-20))))
        return mu, out

    def encode(self, x):
        return self.encode_dist(x)[0]

    def sample_posterior(self, mu, logvar):
        # reparameterisation: z = mu + sigma * eps, so gradients flow to mu and logvar through z;
        # sigma is exp(logvar / 2): logvar is log sigma^2
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def loss(self, x):
        mu, logvar = self.encode_dist(x)
        if self.iwae_k > 1:
            return self.importance_weighted_loss(x, mu, logvar, self.iwae_k)
        z = self.sample_posterior(mu, logvar)
        recon = bernoulli_cross_entropy(self.decode_logits(z), x).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"total": recon + self.beta * kl, "recon": recon, "kl": kl}

    def log_importance_weights(self, x, mu, logvar, eps):
        """The importance-weighted estimator's terms for the draws z_i = mu + sigma * eps_i (eps: n x B x latent):

            log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x)

        returned as (log w, -log p(x | z), log p(z) - log q(z|x)), each n x B. Training (the IWAE objective)
        and evaluation (measures.iwae_nll) both compute the bound from these, so there is one estimator.
        (z - mu) / sigma is written as eps: where a posterior is so narrow that sigma underflows float32
        (beta = 0 lets codes shrink to points), (z - mu) / sigma would be 0/0; the 2*pi terms cancel.
        """
        z = mu + torch.exp(0.5 * logvar) * eps
        log_prior_minus_log_q = 0.5 * (eps.pow(2) - z.pow(2) + logvar).sum(-1)
        recon = bernoulli_cross_entropy(self.decode_logits(z), x)
        return -recon + log_prior_minus_log_q, recon, log_prior_minus_log_q

    def importance_weighted_loss(self, x, mu, logvar, k):
        """Burda et al. (2016), "Importance Weighted Autoencoders", eq. 8, negated:

            -log (1/k) sum_i w_i,   w_i = p(x | z_i) p(z_i) / q(z_i | x),   z_1..z_k ~ q(z | x)

        a tighter bound on -log p(x) than the ELBO, never above the mean of the k one-sample ELBOs
        (Jensen); k = 1 is the ELBO with a sampled KL. recon and kl report the one-sample terms' means,
        and elbo their sum: the negative ELBO, to compare with models trained on it.
        """
        eps = torch.randn(k, *mu.shape, device=mu.device, dtype=mu.dtype)
        log_w, recon, log_prior_minus_log_q = self.log_importance_weights(x, mu, logvar, eps)  # k x B each
        bound = torch.logsumexp(log_w, dim=0) - math.log(k)
        recon, kl = recon.mean(), -log_prior_minus_log_q.mean()
        return {"total": -bound.mean(), "recon": recon, "kl": kl, "elbo": recon + kl}


def gaussian_kl(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, in closed form.

    Kingma & Welling (2014), appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


MODELS = {cls.kind: cls for cls in (AutoEncoder, VAE)}


def build_model(kind, **model_args):
    return MODELS[kind](**model_args)


@torch.no_grad()
def encode_in_batches(model, images, batch_size=2000):
    """model.encode over many images, a batch at a time (the VAE: posterior means)."""
    return torch.cat([model.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says which file and why."""


def save_checkpoint(path, model, **extra):
    """Write model (kind, constructor arguments, weights) and `extra` entries to path, atomically.

    The file is written next to its destination and renamed over it, so a crash, a full disk or a
    read-only folder mid-write leaves the previous checkpoint intact (and a CheckpointError says why).
    """
    checkpoint = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kind": model.kind,
        "model_args": model.model_args,
        "model_state": model.state_dict(),
        **extra,
    }
    tmp_path = f"{path}.tmp{os.getpid()}"
    try:
        # serialised in memory first: torch's file writer reports a full disk as an internal assertion
        # ("unexpected pos ..."), a plain write as ENOSPC, which the error line can name
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with open(tmp_path, "wb") as f:
            f.write(buffer.getbuffer())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as e:  # torch's writer reports a failed write as a RuntimeError
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1][:200]
        raise CheckpointError(f"{path}: cannot write the checkpoint ({why}); any previous one is unchanged") from None
    finally:
        try:
            os.remove(tmp_path)
        except OSError:
            pass


def read_checkpoint(path, map_location="cpu", kinds=tuple(MODELS)):
    """The checkpoint's dict, loaded without running code from the file, with its keys checked.

    kinds: the model kinds the caller can use (the judge's file, lab/judge.py, is of kind "classifier").
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except Exception as e:  # unpickling errors come in many types; all mean "not a checkpoint we can trust"
        if "GLOBAL" in str(e):  # the pickle names a Python function or class: the safe loader stopped it
            # torch's own message suggests weights_only=False; for a file from elsewhere that is the wrong advice
            raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors, which could run "
                                  f"code when loaded; not loaded") from None
        if "Weights only load failed" in str(e):
            raise CheckpointError(f"{path}: not a readable checkpoint (not a PyTorch file, or damaged)") from None
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line[:200]})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint of this project (holds a {type(checkpoint).__name__})")
    missing = [k for k in ("format_version", "kind", "model_args", "model_state") if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    version = checkpoint["format_version"]
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this code reads "
                              f"({CHECKPOINT_FORMAT_VERSION}); update the project")
    if checkpoint["kind"] not in kinds:
        raise CheckpointError(f"{path}: unknown model kind {checkpoint['kind']!r} here "
                              f"(expected one of {', '.join(kinds)})")
    return checkpoint


def load_checkpoint(path, map_location="cpu"):
    """Rebuild the model stored in path from the file alone; returned in eval mode."""
    checkpoint = read_checkpoint(path, map_location)
    try:
        model = build_model(checkpoint["kind"], **checkpoint["model_args"])
        model.load_state_dict(checkpoint["model_state"])
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        first_line = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit a {checkpoint['kind']} model "
                              f"with {checkpoint['model_args']} ({first_line[:200]})") from None
    model.dataset = checkpoint.get("dataset", "mnist")  # what it was trained on (a file without the key: MNIST)
    model.data_source = checkpoint.get("data_source")  # a user's images: where they were, their SHA-256, classes
    return model.to(map_location).eval()

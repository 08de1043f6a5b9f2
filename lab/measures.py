"""Numbers that describe one trained model, each computed by one small function.

All losses are in nats per image; accuracies are fractions in [0, 1]. Measures of generated images
(which need the judge) are in sample_measures.py; statistics over seeds in seed_statistics.py.
"""
import math

import torch
import torch.nn.functional as F

from models import bernoulli_cross_entropy

PIXEL_THRESHOLDS = (0.5, 0.6)  # 0.5: a pixel is "ink" when more likely on than off; 0.6: the original project's number


def pixel_accuracy(reconstruction, x, threshold):
    """Fraction of pixels on the same side of `threshold` in the reconstruction and the input."""
    return ((reconstruction > threshold) == (x > threshold)).float().mean()


@torch.no_grad()
def evaluate_split(model, split, batch_size=1000, seed=0):
    """Mean loss terms and pixel accuracies of model over a data split.

    The VAE's loss draws z ~ q(z|x); a fixed seed makes that draw the same every time, and
    fork_rng keeps this evaluation from moving the training run's random stream.
    """
    was_training = model.training
    model.eval()
    sums = {}
    device = split.images.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for images, _ in split.batches(batch_size):
            n = len(images)
            terms = {f"loss_{k}": v for k, v in model.loss(images).items()}
            reconstruction = model.reconstruct(images)
            for t in PIXEL_THRESHOLDS:
                terms[f"pixel_acc_{t}"] = pixel_accuracy(reconstruction, images, t)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * n
    model.train(was_training)
    return {k: (v / len(split)).item() for k, v in sums.items()}


INK_THRESHOLD = 0.5  # a pixel is ink when its grey level (or predicted probability) exceeds this


@torch.no_grad()
def reconstruct_in_batches(model, images, batch_size=1000):
    return torch.cat([model.reconstruct(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def ink_scores(predicted_ink, true_ink):
    """F1 and IoU of the ink pixels: measures the background (most of every image) cannot inflate."""
    tp = (predicted_ink & true_ink).sum().item()
    fp = (predicted_ink & ~true_ink).sum().item()
    fn = (~predicted_ink & true_ink).sum().item()
    return {"ink_f1": 2 * tp / max(1, 2 * tp + fp + fn), "ink_iou": tp / max(1, tp + fp + fn)}


def reconstruction_metrics(reconstruction, images):
    """Pixel accuracies and ink F1/IoU of a reconstruction (probabilities) against the images."""
    result = {f"pixel_acc_{t}": pixel_accuracy(reconstruction, images, t).item() for t in PIXEL_THRESHOLDS}
    return result | ink_scores(reconstruction > INK_THRESHOLD, images > INK_THRESHOLD)


def all_black_baseline(images):
    """What predicting an empty (all-black) image for every input scores on the same measures."""
    return reconstruction_metrics(torch.zeros_like(images), images)


@torch.no_grad()
def elbo_and_iwae(model, images, k=100, chunk=50, seed=0):
    """Two estimates of -log p(x) for a VAE from the same k draws z_i ~ q(z | x), nats per image:

        -ELBO   = -(1/k) sum_i log w_i          (the mean of k one-sample ELBOs; k draws only cut its noise)
        -IWAE_k = -log (1/k) sum_i w_i,   w_i = p(x | z_i) p(z_i) / q(z_i | x)     (Burda et al. 2016, eq. 8)

    The IWAE bound tightens as k grows; from the same draws it is never above the -ELBO (Jensen), image by
    image. The draws go `chunk` at a time, combined with running sums, so memory stays at chunk x images
    (50 x 100 images: 16 MB of logits, which stays in the CPU cache and is faster than larger chunks).
    """
    generator = torch.Generator(device=images.device).manual_seed(seed)
    mu, logvar = model.encode_dist(images)
    log_weights, weight_sum = [], torch.zeros(len(images), device=images.device)
    for start in range(0, k, chunk):
        eps = torch.randn(min(chunk, k - start), *mu.shape, generator=generator, device=mu.device)
        log_w, _, _ = model.log_importance_weights(images, mu, logvar, eps)  # n x B
        log_weights.append(torch.logsumexp(log_w, dim=0))
        weight_sum += log_w.sum(0)
    log_px = torch.logsumexp(torch.stack(log_weights), dim=0) - math.log(k)
    return -weight_sum / k, -log_px


def iwae_nll(model, images, k=1000, chunk=50, seed=0):
    """The importance-weighted estimate of -log p(x) alone (elbo_and_iwae), nats per image."""
    return elbo_and_iwae(model, images, k, chunk, seed)[1]


def iwae_nll_of_split(model, images, k=1000, batch_size=100, seed=0):
    """Mean IWAE estimate of -log p(x) over images, in batches (memory ~ batch_size x chunk images)."""
    return likelihood_bounds(model, images, k, seed, quadrature=False, batch_size=batch_size)["iwae_nll"]


@torch.no_grad()
def likelihood_bounds(model, images, k=100, seed=0, quadrature=True, batch_size=100):
    """A VAE's three numbers for -log p(x) on the same images, means in nats per image, each below the last:
    neg_elbo and iwae_nll (elbo_and_iwae, k draws per image), and nll, the quadrature (2-D latents only;
    None with nll_skipped saying why when the posteriors lie beyond its reach). -ELBO >= IWAE holds image by
    image; IWAE >= the quadrature in expectation, by the IWAE gap (nats) against its noise (hundredths)."""
    sums = {"neg_elbo": 0.0, "iwae_nll": 0.0}
    for i in range(0, len(images), batch_size):
        neg_elbo, iwae = elbo_and_iwae(model, images[i:i + batch_size], k, seed=seed + i)
        sums["neg_elbo"] += neg_elbo.sum().item()
        sums["iwae_nll"] += iwae.sum().item()
    result = {name: total / len(images) for name, total in sums.items()}
    if quadrature and model.latent_dim == 2:
        try:
            result["nll"] = quadrature_nll(model, images, quadrature_extent(model, images)).mean().item()
        except OutOfReach as e:
            result["nll"], result["nll_skipped"] = None, str(e)
    return result


@torch.no_grad()
def reconstruction_nats(model, images, batch_size=1000):
    """Cross-entropy of the images under the decoder at the code the model gives them (the VAE: its posterior
    mean, no draw), nats per image: the reconstruction a user of the model gets."""
    total = sum(bernoulli_cross_entropy(model.decode_logits(model.encode(x)), x).sum().item()
                for x in images.split(batch_size))
    return total / len(images)


# the widest box quadrature_nll integrates over: 28x the prior box's coarse work. A best-recipe VAE put one
# test image's posterior 28.7 from the origin; a beta = 0 VAE's codes reach 50 to 90, beyond any affordable box
QUADRATURE_REACH = 32.0


class OutOfReach(ValueError):
    """The posteriors lie beyond the box the quadrature can afford: its -log p(x) would be wrong, not just loose."""


@torch.no_grad()
def quadrature_extent(model, images, least=6.0):
    """The half-width of the box holding every image's posterior (mean +- 4 sd; at least `least`, where the
    prior's mass beyond is 2e-9): outside it, p(x|z) p(z) is negligible. OutOfReach beyond QUADRATURE_REACH
    (a beta = 0 VAE's codes reach +-40, an AutoEncoder's too)."""
    mu, logvar = model.encode_dist(images)
    need = (mu.abs() + 4 * torch.exp(0.5 * logvar)).max().item()
    if need > QUADRATURE_REACH:
        raise OutOfReach(f"posteriors reach {need:.1f} from the origin, beyond the quadrature's box "
                         f"[-{QUADRATURE_REACH:g}, {QUADRATURE_REACH:g}]²")
    return max(least, math.ceil(need))


def _tile_points(extent, tile, step, device):
    """Midpoints of a step x step grid over [-extent, extent]², grouped by tile: tiles² x points-per-tile x 2."""
    tiles_per_axis, per_tile = round(2 * extent / tile), round(tile / step)
    corners = -extent + tile * torch.arange(tiles_per_axis, device=device, dtype=torch.float32)
    offsets = step * (torch.arange(per_tile, device=device, dtype=torch.float32) + 0.5)
    return (torch.cartesian_prod(corners, corners)[:, None, :]
            + torch.cartesian_prod(offsets, offsets)[None, :, :])


def _log_joint(model, x, points):
    """log p(x | z) + log N(z; 0, I) for every image (rows) and latent point (columns)."""
    logits = model.decode_logits(points).flatten(1)
    # log p(x|z) = x·log σ(l) + (1-x)·log σ(-l) = x·l + sum log σ(-l), since log σ(l) - log σ(-l) = l
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(points).sum(1)
    return x @ logits.T + F.logsigmoid(-logits).sum(1) + log_prior


@torch.no_grad()
def quadrature_nll(model, images, extent=6.0, step=0.02, tile=0.5, coarse_step=0.1, keep_nats=20.0,
                   image_chunk=1000, point_chunk=4000):
    """-log p(x) of a 2-D latent model by integrating over the latent plane, nats per image:

        p(x) = ∫ p(x | z) p(z) dz  ≈  sum over a step x step grid on [-extent, extent]² of p(x | z) N(z; 0, I) step²

    With two latent dimensions the integral needs no estimator, and the sum converges fast (a smooth
    integrand; on the README's models step 0.02 agrees with 0.005 to 0.003 nats). Leaving out the mass
    beyond `extent` can only lower p(x): negligible while the box holds the posteriors (quadrature_extent
    says how wide it must be; a posterior far out, where p(x|z) is large enough to outweigh a tiny p(z),
    would make the result wrong, not just loose).

    Each image's integrand is concentrated where its posterior lies, a few tiles of the plane; the fine
    grid everywhere would cost 361 201 decodes and a 10 000 x 361 201 x 784 product. So the plane is cut
    into tile x tile tiles and summed twice: first on a coarse grid (step coarse_step) for every image and
    tile; then, for each image, the tiles within keep_nats of its largest tile and their neighbours are
    summed again on the fine grid. A tile left coarse holds under e^-keep_nats of the image's likelihood,
    so its coarse sum changes p(x) by far less than the fine grid's own error (a test checks the result
    against the fine grid everywhere).
    """
    if model.latent_dim != 2:
        raise ValueError(f"quadrature needs a 2-D latent space, this model has {model.latent_dim} dimensions")
    for outer, inner in ((2 * extent, tile), (tile, step), (tile, coarse_step)):
        if abs(outer / inner - round(outer / inner)) > 1e-6:
            raise ValueError(f"quadrature grid: {outer:g} is not a whole number of {inner:g}-wide steps")
    device, x = images.device, images.flatten(1)
    coarse = _tile_points(extent, tile, coarse_step, device)  # tiles x 25 x 2
    tiles, per_coarse_tile = coarse.shape[:2]
    tile_mass = torch.empty(len(x), tiles, device=device)  # log of each tile's share of p(x), coarse
    # whole tiles at a time, each summed at once: only image_chunk x point_chunk values exist together (holding
    # every coarse point for a chunk of 1000 images took 8.8 GB on the ±29 box of the best model)
    tiles_per_chunk = max(1, point_chunk // per_coarse_tile)
    for i in range(0, len(x), image_chunk):
        for j in range(0, tiles, tiles_per_chunk):
            log_joint = _log_joint(model, x[i:i + image_chunk], coarse[j:j + tiles_per_chunk].reshape(-1, 2))
            tile_mass[i:i + image_chunk, j:j + tiles_per_chunk] = (
                torch.logsumexp(log_joint.view(len(log_joint), -1, per_coarse_tile), 2) + 2 * math.log(coarse_step))
    # the tiles that matter to each image, and their neighbours (a peak near a tile's edge spills over)
    side = round(math.sqrt(tiles))
    matters = (tile_mass >= tile_mass.max(1, keepdim=True).values - keep_nats).float().view(-1, 1, side, side)
    matters = F.max_pool2d(matters, 3, stride=1, padding=1).view(len(x), tiles) > 0
    fine = _tile_points(extent, tile, step, device)
    for t in matters.any(0).nonzero().flatten().tolist():
        rows = matters[:, t].nonzero().flatten()
        tile_mass[rows, t] = torch.logsumexp(_log_joint(model, x[rows], fine[t]), 1) + 2 * math.log(step)
    return -torch.logsumexp(tile_mass, 1)


def knn_accuracy(train_codes, train_labels, test_codes, test_labels, k=5, batch_size=1000):
    """Accuracy of a k-nearest-neighbour vote (Euclidean) in code space, fitted on the training codes."""
    correct, classes = 0, int(max(train_labels.max(), test_labels.max())) + 1
    for i in range(0, len(test_codes), batch_size):
        distances = torch.cdist(test_codes[i:i + batch_size], train_codes)
        neighbours = distances.topk(k, largest=False).indices
        votes = torch.nn.functional.one_hot(train_labels[neighbours], classes).sum(1)
        # ties go to the class of the nearest neighbour among the tied ones: add a fraction for rank
        tie_break = torch.nn.functional.one_hot(train_labels[neighbours[:, 0]], classes) * 0.5
        correct += ((votes + tie_break).argmax(1) == test_labels[i:i + batch_size]).sum().item()
    return correct / len(test_codes)


def latent_grid(grid_range, grid_size):
    """grid_size^2 latent points on [-grid_range, grid_range]^2, row by row from the top (z2 high)."""
    ticks = torch.linspace(-grid_range, grid_range, grid_size)
    z2, z1 = torch.meshgrid(ticks.flip(0), ticks, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1)


def gaussian_mmd2(x, y, bandwidths=(0.5, 1.0, 2.0, 4.0)):
    """Squared maximum mean discrepancy between samples x and y (unbiased; sum of RBF kernels).

    Gretton et al. (2012). Zero in expectation when x and y come from the same distribution.
    """
    def kernel(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
            + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean()).item()


def prior_match(codes, n=2000, seed=0):
    """How far the aggregate posterior (the codes of many images) is from N(0, I)."""
    generator = torch.Generator().manual_seed(seed)
    codes = codes.cpu()
    subset = codes[torch.randperm(len(codes), generator=generator)[:n]]
    prior = torch.randn(len(subset), codes.shape[1], generator=generator)
    covariance = torch.cov(codes.T)
    return {"code_mean_norm": codes.mean(0).norm().item(),
            "code_cov_distance_to_identity": (covariance - torch.eye(codes.shape[1])).norm().item(),
            "mmd2_to_prior": gaussian_mmd2(subset, prior)}


def active_dimensions(posterior_means, threshold=0.01):
    """Latent dimensions the encoder uses (Burda et al. 2016, sec. 5.2): those whose posterior mean E_q[z_j]
    varies over the data by more than `threshold` (Cov_x(E_q[z_j]) > 0.01); a collapsed unit's mean stays put."""
    return int((posterior_means.double().var(0) > threshold).sum().item())

"""Numbers that describe one trained model, each computed by one small function.

All losses are in nats per image; accuracies are fractions in [0, 1]. Measures of generated images
(which need the judge) are in sample_measures.py; statistics over seeds in seed_statistics.py.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Normal

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
    """Two estimates of -log p(x) for a VAE from the same k draws z_i ~ q(z | x), nats per image, and how many
    of the draws the second rests on:

        -ELBO   = -(1/k) sum_i log w_i          (the mean of k one-sample ELBOs; k draws only cut its noise)
        -IWAE_k = -log (1/k) sum_i w_i,   w_i = p(x | z_i) p(z_i) / q(z_i | x)     (Burda et al. 2016, eq. 8)
        ESS     = (sum_i w_i)² / sum_i w_i²     (Kish's effective sample size, 1 to k)

    The IWAE bound tightens as k grows; from the same draws it is never above the -ELBO (Jensen), image by
    image. A small ESS says a few draws carry the weight: q misses where p(z | x) lies (a mode, a tail), and
    the bound may still be far above -log p(x) however it looks. The draws go `chunk` at a time, combined with
    running sums, so memory stays at chunk x images (50 x 100 images: 16 MB of logits, which stays in the CPU
    cache and is faster than larger chunks).
    """
    generator = torch.Generator(device=images.device).manual_seed(seed)
    mu, logvar = model.encode_dist(images)
    log_sums, log_square_sums, weight_sum = [], [], torch.zeros(len(images), device=images.device)
    for start in range(0, k, chunk):
        eps = torch.randn(min(chunk, k - start), *mu.shape, generator=generator, device=mu.device)
        log_w, _, _ = model.log_importance_weights(images, mu, logvar, eps)  # n x B
        log_sums.append(torch.logsumexp(log_w, dim=0))
        log_square_sums.append(torch.logsumexp(2 * log_w, dim=0))
        weight_sum += log_w.sum(0)
    log_sum = torch.logsumexp(torch.stack(log_sums), dim=0)
    ess = torch.exp(2 * log_sum - torch.logsumexp(torch.stack(log_square_sums), dim=0))
    return -weight_sum / k, -(log_sum - math.log(k)), ess


def iwae_nll(model, images, k=1000, chunk=50, seed=0):
    """The importance-weighted estimate of -log p(x) alone (elbo_and_iwae), nats per image."""
    return elbo_and_iwae(model, images, k, chunk, seed)[1]


def iwae_nll_of_split(model, images, k=1000, batch_size=100, seed=0):
    """Mean IWAE estimate of -log p(x) over images, in batches (memory ~ batch_size x chunk images)."""
    return likelihood_bounds(model, images, k, seed, quadrature=False, batch_size=batch_size)["iwae_nll"]


@torch.no_grad()
def single_decode_is_nll(model, images, k=500, seed=0, batch_size=100):
    """The importance-sampled "-log p(x)" of Davidson et al.'s TensorFlow example (nicola-decao/s-vae-tf,
    examples/mnist.py, log_likelihood), to set beside their published table: -log p(x | z_0) at one draw
    z_0 ~ q(z|x), minus log (1/k) sum_i p(z_i) / q(z_i|x) over k more draws. It is not an estimate of -log p(x):
    p(x|z) is never taken at the k draws. In expectation it equals the -ELBO at k = 1 and falls with k towards
    the reconstruction term (the -ELBO less the KL), slowly: p/q has infinite variance where q is narrower than
    the prior by a factor of sqrt(2). Mean over images, nats. (Their PyTorch code decodes every draw, as
    iwae_nll does.)"""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        mu, logvar = model.encode_dist(x)
        sigma = torch.exp(0.5 * logvar)
        z0 = mu + sigma * torch.randn(mu.shape, generator=generator).to(mu)
        recon0 = bernoulli_cross_entropy(model.decode_logits(z0), x)
        z = mu + sigma * torch.randn((k, *mu.shape), generator=generator).to(mu)
        log_ratio = (Normal(0.0, 1.0).log_prob(z) - Normal(mu, sigma).log_prob(z)).sum(-1)  # k x B, no decoding
        total += (recon0 - (torch.logsumexp(log_ratio, 0) - math.log(k))).sum().item()
    return total / len(images)


LOW_ESS = 0.05  # an image's IWAE bound rests on few draws when its ESS is below this share of k (and below 2)
# a quadrature above an image's IWAE estimate by more than this many nats has missed mass (a mode no tile was
# refined over): an unbiased importance-sampling estimate of p(x) exceeds e^t p(x) with probability <= e^-t
# (Markov), so a correct quadrature is flagged with probability under 5e-5 per image
MISSED_MASS_NATS = 10.0


@torch.no_grad()
def likelihood_bounds(model, images, k=100, seed=0, quadrature=True, batch_size=100):
    """A VAE's three numbers for -log p(x) on the same images, means in nats per image, each below the last:
    neg_elbo and iwae_nll (elbo_and_iwae, k draws per image), and nll, the quadrature (2-D latents only;
    None with nll_skipped saying why when the posteriors lie beyond its reach). -ELBO >= IWAE holds image by
    image; IWAE >= the quadrature in expectation, by the IWAE gap (nats) against its noise (hundredths).

    With them, what each rests on: iwae_ess, the mean effective sample size of the IWAE weights (draws out of
    k), and iwae_low_ess_share, the share of images below max(2, LOW_ESS x k) (a loose bound); for the
    quadrature, quadrature_step_error_nats, the largest per-image change of its last step halving (nll is exact
    to within it; the reports print it beside nll), quadrature_refined_images, how many images needed a step
    finer than QUADRATURE_STEP, and quadrature_missed_mass_images, how many images' quadrature lies more than
    MISSED_MASS_NATS above their own IWAE estimate (0 unless the quadrature missed a mode)."""
    sums = {"neg_elbo": 0.0, "iwae_nll": 0.0, "iwae_ess": 0.0, "iwae_low_ess_share": 0.0}
    per_image_iwae = []
    for i in range(0, len(images), batch_size):
        neg_elbo, iwae, ess = elbo_and_iwae(model, images[i:i + batch_size], k, seed=seed + i)
        sums["neg_elbo"] += neg_elbo.sum().item()
        sums["iwae_nll"] += iwae.sum().item()
        sums["iwae_ess"] += ess.sum().item()
        sums["iwae_low_ess_share"] += (ess < max(2.0, LOW_ESS * k)).sum().item()
        per_image_iwae.append(iwae)
    result = {name: total / len(images) for name, total in sums.items()}
    if quadrature and model.latent_dim == 2:
        try:
            exact = certified_quadrature(model, images, quadrature_extent(model, images))
            above_iwae = exact.nll - torch.cat(per_image_iwae)
            result |= {"nll": exact.nll.mean().item(), "quadrature_step_error_nats": exact.step_error.max().item(),
                       "quadrature_refined_images": int((exact.step < QUADRATURE_STEP * (1 - 1e-6)).sum()),
                       "quadrature_missed_mass_images": int((above_iwae > MISSED_MASS_NATS).sum())}
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


# the largest disagreement, nats per image, between a quadrature's final step and the next coarser one under which
# its -log p(x) is called exact; images above it are refined step by step, down to FINEST_STEP
QUADRATURE_BOUND = 0.01
QUADRATURE_STEP = 0.02  # where every image starts (compared with twice it)
FINEST_STEP = QUADRATURE_STEP / 16


@dataclass
class Quadrature:
    """certified_quadrature()'s result, per image: -log p(x) at the image's final step (nats), the step, and
    step_error, |-log p(x) at that step - at twice that step| (nats): how far the last halving of the step moved it."""
    nll: torch.Tensor
    step: torch.Tensor
    step_error: torch.Tensor


def _tile_points(extent, tile, step, device, tiles=None):
    """Midpoints of a step x step grid over [-extent, extent]², grouped by tile: tiles x points-per-tile x 2
    (tiles: the indices of the tiles wanted, row-major; default all)."""
    tiles_per_axis, per_tile = round(2 * extent / tile), round(tile / step)
    if tiles is None:
        tiles = torch.arange(tiles_per_axis ** 2, device=device)
    tiles = torch.as_tensor(tiles, device=device).reshape(-1)
    corners = -extent + tile * torch.stack([tiles // tiles_per_axis, tiles % tiles_per_axis], 1).float()
    offsets = step * (torch.arange(per_tile, device=device, dtype=torch.float32) + 0.5)
    return corners[:, None, :] + torch.cartesian_prod(offsets, offsets)[None, :, :]


def _log_joint(model, x, points):
    """log p(x | z) + log N(z; 0, I) for every image (rows) and latent point (columns)."""
    logits = model.decode_logits(points).flatten(1)
    # log p(x|z) = x·log σ(l) + (1-x)·log σ(-l) = x·l + sum log σ(-l), since log σ(l) - log σ(-l) = l
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(points).sum(1)
    return x @ logits.T + F.logsigmoid(-logits).sum(1) + log_prior


def _check_grid(extent, tile, *steps):
    for outer, inner in ((2 * extent, tile),) + tuple((tile, s) for s in steps):
        if abs(outer / inner - round(outer / inner)) > 1e-5 * max(1.0, outer / inner):  # float32 steps too
            raise ValueError(f"quadrature grid: {outer:g} is not a whole number of {inner:g}-wide steps")


def _tiles_that_matter(model, x, extent, tile, coarse_step, keep_nats, image_chunk, point_chunk):
    """Each image's coarse log mass per tile (images x tiles), and which tiles to sum finely: those within
    keep_nats of the image's largest, the one holding its posterior mean (a posterior narrower than the coarse
    step can fall between its points), and their neighbours (a peak near a tile's edge spills over)."""
    device = x.device
    coarse = _tile_points(extent, tile, coarse_step, device)  # tiles x 16 x 2
    tiles, per_coarse_tile = coarse.shape[:2]
    tile_mass = torch.empty(len(x), tiles, device=device)
    # whole tiles at a time, each summed at once: only image_chunk x point_chunk values exist together (holding
    # every coarse point for a chunk of 1000 images took 8.8 GB on the ±29 box of the best model)
    tiles_per_chunk = max(1, point_chunk // per_coarse_tile)
    for i in range(0, len(x), image_chunk):
        for j in range(0, tiles, tiles_per_chunk):
            log_joint = _log_joint(model, x[i:i + image_chunk], coarse[j:j + tiles_per_chunk].reshape(-1, 2))
            tile_mass[i:i + image_chunk, j:j + tiles_per_chunk] = (
                torch.logsumexp(log_joint.view(len(log_joint), -1, per_coarse_tile), 2) + 2 * math.log(coarse_step))
    side = round(math.sqrt(tiles))
    matters = tile_mass >= tile_mass.max(1, keepdim=True).values - keep_nats
    if hasattr(model, "encode_dist"):
        mu = model.encode_dist(x.view(len(x), *model.image_shape))[0]
        cell = ((mu + extent) / tile).floor().long().clamp(0, side - 1)
        matters[torch.arange(len(x), device=device), cell[:, 0] * side + cell[:, 1]] = True
    matters = F.max_pool2d(matters.float().view(-1, 1, side, side), 3, stride=1, padding=1).view(len(x), tiles) > 0
    return tile_mass, matters


def _log_px(model, x, tile_mass, matters, extent, tile, step, point_chunk):
    """log p(x) per image: the tiles that matter summed on the step grid, the others as the coarse pass had them.
    Writes into tile_mass, which must be the caller's own copy (certified_quadrature passes tile_mass[rows]; a
    clone here would hold a second images x tiles copy, 0.8 GB per step on the best model's ±29 box)."""
    mass = tile_mass
    for t in matters.any(0).nonzero().flatten().tolist():
        rows = matters[:, t].nonzero().flatten()
        points = _tile_points(extent, tile, step, x.device, [t])[0]
        parts = [torch.logsumexp(_log_joint(model, x[rows], points[p:p + point_chunk]), 1)
                 for p in range(0, len(points), point_chunk)]
        mass[rows, t] = torch.logsumexp(torch.stack(parts), 0) + 2 * math.log(step)
    return torch.logsumexp(mass, 1)


@torch.no_grad()
def certified_quadrature(model, images, extent=6.0, step=QUADRATURE_STEP, bound=QUADRATURE_BOUND,
                         finest_step=FINEST_STEP, tile=0.4, coarse_step=0.1, keep_nats=20.0, image_chunk=1000,
                         point_chunk=4000):
    """-log p(x) of a 2-D latent model by integrating over the latent plane, nats per image, with a step each
    image's integrand is resolved by (a Quadrature):

        p(x) = ∫ p(x | z) p(z) dz  ≈  sum over a step x step grid on [-extent, extent]² of p(x | z) N(z; 0, I) step²

    With two latent dimensions the integral needs no estimator, only a grid fine enough for the integrand. A
    fixed step is not: a posterior with sd 0.003 (the best VAE has them) puts its mass between the points of a
    0.02 grid, and its image's value then moves by a tenth of a nat when the step changes. So each image starts
    at the largest step step / 2^j not above its posterior's smallest sd (the encoder's; at most `step`, at
    least finest_step), is summed there and at twice that step, and an image whose two sums differ by more than
    `bound` nats is summed again at half the step, and again, until two successive steps agree or the step
    reaches finest_step. step_error is each image's last disagreement; an image still above `bound` is
    reported, never hidden. Below the integrand's width the midpoint rule's error shrinks like
    exp(-2 π² sd² / step²) with each halving, so the last halving's change bounds the error left; starting at
    the posterior's width is what makes that so (two steps both far wider than the integrand can agree by
    chance: a simulation found 0.7 % of such images off by up to 1.3 nats when every image started at 0.02).

    Leaving out the mass beyond `extent` can only lower p(x): negligible while the box holds the posteriors
    (quadrature_extent says how wide it must be). Each image's integrand is concentrated where its posterior
    lies, a few tiles of the plane; the fine grid everywhere would cost 361 201 decodes and a 10 000 x 361 201 x
    784 product at step 0.02. So the plane is cut into tile x tile tiles, summed on a coarse grid (coarse_step)
    for every image and tile, and only the tiles that matter to an image (_tiles_that_matter) are summed on the
    fine grids. Where the integrand is wider than the coarse step, a tile left coarse holds under e^-keep_nats of
    the image's likelihood (a test checks the result against the fine grid everywhere); a narrower mode away
    from the posterior mean can fall between the coarse points and be missed by every step, which
    likelihood_bounds flags against the image's IWAE estimate (quadrature_missed_mass_images).
    """
    if model.latent_dim != 2:
        raise ValueError(f"quadrature needs a 2-D latent space, this model has {model.latent_dim} dimensions")
    deepest = max(0, round(math.log2(step / finest_step)))  # halvings allowed: 4 from 0.02 to 0.00125
    _check_grid(extent, tile, coarse_step, 2 * step, step, step / 2 ** deepest)
    x = images.flatten(1)
    if not len(x):
        return Quadrature(nll=x.new_empty(0), step=x.new_empty(0), step_error=x.new_empty(0))
    tile_mass, matters = _tiles_that_matter(model, x, extent, tile, coarse_step, keep_nats, image_chunk, point_chunk)
    start = torch.zeros(len(x), dtype=torch.long, device=x.device)  # each image's first step is step / 2^start
    if hasattr(model, "encode_dist") and bound != math.inf:
        narrowest = torch.exp(0.5 * model.encode_dist(x.view(len(x), *model.image_shape))[1]).min(1).values
        start = torch.ceil(torch.log2(step / narrowest)).clamp(0, deepest).long()
    log_px = torch.empty(len(x), device=x.device)
    step_error = torch.full_like(log_px, math.nan)
    if bound == math.inf:  # one step, uncertified (tests of the tiling; a reference grid)
        log_px[:] = _log_px(model, x, tile_mass, matters, extent, tile, step, point_chunk)
        return Quadrature(nll=-log_px, step=torch.full_like(log_px, step), step_error=step_error)
    # Level by level, finest last, so that each tile is decoded once per step: level L sums the images that start
    # there, those starting at L + 1 (their comparison) and those still unsettled at L - 1 (each unsettled image
    # halves its own step); the same sums as image by image, with a third to a half of the decoding
    level = start.clone()  # each image's current step is step / 2^level
    previous = torch.full_like(log_px, math.nan)  # each image's sum at the level below the one being summed
    for at in range(start.min().item() - 1, deepest + 1):
        unsettled = (level == at - 1) & (step_error > bound)
        level[unsettled] = at
        rows = ((level == at) | (start == at + 1)).nonzero().flatten()
        here = torch.full_like(log_px, math.nan)
        if rows.numel():
                here[rows] = _log_px(model, x[rows], tile_mass[rows], matters[rows], extent, tile, step / 2 ** at,
                                 point_chunk)
        now = level == at
        step_error[now] = (here[now] - previous[now]).abs()
        log_px[now] = here[now]
        previous = here
    return Quadrature(nll=-log_px, step=step / 2 ** level.float(), step_error=step_error)


def quadrature_nll(model, images, extent=6.0, step=QUADRATURE_STEP, **settings):
    """-log p(x) per image, nats, by certified_quadrature(); with bound=math.inf, at `step` alone."""
    return certified_quadrature(model, images, extent, step, **settings).nll


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

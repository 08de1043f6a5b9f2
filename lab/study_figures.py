"""The study's and the β sweep's figures, drawn from study.json's and beta_sweep.json's contents alone
(and, for the sweep's rows of panels, the first seed's checkpoints)."""
import matplotlib.pyplot as plt
import numpy as np
import torch

from lab.figures import show_image_grid
from lab.reports import MEASURE_TITLES, SHARES, TITLES
from lab.sample_measures import SAMPLE_MEASURES
from lab.seed_study import SAMPLERS
from models import encode_in_batches


def samplers_figure(summary, floors):
    """The sample measures per model and sampler, mean and 95 % interval over seeds; one row per dataset."""
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
                    if low is not None and metric in SHARES:  # the t interval drawn inside [0, 1]
                        low, high = max(0.0, low), min(1.0, high)
                    err = [[s["mean"] - low], [high - s["mean"]]] if low is not None and low == low else None
                    ax.errorbar(x + offset, s["mean"], yerr=err, fmt="o", color=colours[model], capsize=3,
                                label=TITLES[model] if x == 0 else None)
                    values = s.get("values", [])  # every seed's value beside the mean
                    ax.plot([x + offset + 0.06] * len(values), values, ".", color=colours[model], alpha=0.35,
                            markersize=4)
            if metric in floors[dataset]:
                ax.axhline(floors[dataset][metric], color="gray", linestyle="--", linewidth=1,
                           label="training images" if metric == "fid" else None)
            ax.set_xticks(range(len(SAMPLERS)), ["N(0, I)", "Gaussian", "mixture"])
            better = {"fid": " ↓", "density": " (data: ≈ 1)"}.get(metric, " ↑")
            ax.set_title(MEASURE_TITLES[metric].split(" (")[0] + better, fontsize=10)
            if col == 0:
                ax.set_ylabel(TITLES.get(dataset, dataset))
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    n = max((s["n"] for s in summary), default=0)
    fig.suptitle(f"Samples of each model by sampler: mean, 95 % t interval (inside [0, 1] for shares) and each of {n} seeds "
                 "(fitted samplers: on the training codes)")
    fig.tight_layout()
    return fig


def beta_label(beta):
    return "AE" if beta is None else f"β={beta:g}"


def rate_distortion_figure(runs):
    """One point per run in the rate-distortion plane (Alemi et al. 2018), with the line rate + distortion =
    the beta = 1 runs' mean -ELBO: every point on it has the same ELBO; beta only moves along it."""
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
    optimum = [r["rate_nats"] + r["distortion_nats"] for r in vaes if r["beta"] == 1.0]  # the points' own terms
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
    fig, axes = plt.subplots(1, len(models_by_beta), figsize=(2.3 * len(models_by_beta), 2.9), dpi=100, squeeze=False)
    for ax, (beta, model) in zip(axes[0], models_by_beta.items()):
        draw(ax, model, beta)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_latent_scatter(images, labels):
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

    def draw(ax, model, beta):
        z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
        show_image_grid(ax, model.decode(z), int(n ** 0.5), beta_label(beta))
    return draw

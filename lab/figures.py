"""One function per figure: each takes a model (and data) and returns a matplotlib Figure.

explore_latent_space.py saves them for every checkpoint; the notebook shows them; the study's own figures are
in study_figures.py. For the two default models the files are named <figure>_auto.png and <figure>_vae.png.
"""
import io

import matplotlib.pyplot as plt
import numpy as np
import torch

import data
from lab.files import write_atomically
from lab.measures import latent_grid
from models import encode_in_batches

MODEL_TITLE = {"autoencoder": "AutoEncoder", "vae": "VAE"}
INTERPOLATION_DIGITS = [(0, 6), (1, 7), (3, 8), (4, 9), (2, 5)]  # pairs of digits to walk between
DPI = 100


def model_title(model):
    title = MODEL_TITLE[model.kind]
    beta = getattr(model, "beta", 1)
    return title if beta == 1 else f"{title} (β = {beta:g})"


def show_grid(ax, grid, **imshow_args):
    """A make_grid result on ax: grey images (make_grid repeats their one channel) in grey, colour ones in colour."""
    if grid.shape[0] == 3 and not (torch.equal(grid[0], grid[1]) and torch.equal(grid[1], grid[2])):
        ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest", **imshow_args)
    else:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest", **imshow_args)


def show_image_grid(ax, images, nrow, title):
    show_grid(ax, data.image_grid(images.cpu(), nrow=nrow, padding=2, pad_value=1))
    ax.set_title(title)
    ax.axis("off")


@torch.no_grad()
def outputs_figure(model, images):
    """Inputs beside their reconstructions."""
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(8, 2.6), dpi=DPI)
    show_image_grid(ax_in, images, 8, "inputs (test images)")
    show_image_grid(ax_out, model.reconstruct(images), 8, "reconstructions")
    fig.suptitle(f"{model_title(model)}: reconstructions")
    fig.tight_layout()
    return fig


def project_to_2d(codes):
    """The codes themselves when 2-D, else their projection on the two leading principal axes."""
    if codes.shape[1] == 2:
        return codes, False
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, True


@torch.no_grad()
def class_colours(n):
    """n distinguishable colours: tab10's for up to 10 classes (MNIST's figures), tab20's, then a hue circle."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("hsv")(i / n) for i in range(n)]


def as_text(name):
    """A class name shown as it is: matplotlib would read $...$ as mathematics."""
    return str(name).replace("$", r"\$")


@torch.no_grad()
def latent_dist_figure(model, images, labels, class_names=data.DATASETS["mnist"].classes, legend_title="digit"):
    """Test images encoded onto the latent plane, coloured by class (class_names None: unlabelled, one colour)."""
    codes, projected = project_to_2d(encode_in_batches(model, images).cpu())
    fig, ax = plt.subplots(figsize=(6.4, 6), dpi=DPI)
    if class_names is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=2, alpha=0.6, color="tab:blue", rasterized=True)
    handles = []
    for label, (class_name, colour) in enumerate(zip(class_names or [], class_colours(len(class_names or [])))):
        pts = codes[labels.cpu() == label]
        handles.append(ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, color=colour, rasterized=True))
    ax.set_aspect("equal", adjustable="datalim")
    what = "codes" if model.kind == "autoencoder" else "posterior means"
    ax.set_title(f"{model_title(model)}: {len(codes):,} test {what}"
                 + (f"\n(PCA projection of the {model.latent_dim}-D codes)" if projected else ""))
    ax.set_xlabel("PC 1" if projected else "$z_1$")
    ax.set_ylabel("PC 2" if projected else "$z_2$")
    if class_names is not None:  # names given with their handles: matplotlib would drop one starting with "_"
        ax.legend(handles[:20], [as_text(n) for n in class_names[:20]], title=legend_title, markerscale=5,
                  loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # 20 names at most
    fig.tight_layout()
    return fig


MODEL_KIND_TITLE = {"autoencoder": "AutoEncoder", "vae": "VAE"}


def codes_figure(codes, labels, kind, title, limit=None, class_names=data.DATASETS["mnist"].classes,
                 legend_title="digit", size=(4.8, 4.5), dpi=DPI):
    """2-D codes on the latent plane coloured by class, as latent_dist_figure draws them, on the fixed box
    [-limit, limit]² (None: the codes' own extent), so that frames of one run compare epoch by epoch."""
    codes, labels = codes.float().cpu(), labels.cpu()
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    if class_names is None or (labels < 0).all():
        ax.scatter(codes[:, 0], codes[:, 1], s=2, alpha=0.6, color="tab:blue", rasterized=True)
        class_names = None
    handles = []
    for label, (class_name, colour) in enumerate(zip(class_names or [], class_colours(len(class_names or [])))):
        pts = codes[labels == label]
        handles.append(ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, color=colour, rasterized=True))
    if limit is not None:
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_title(f"{MODEL_KIND_TITLE.get(kind, kind)}: {title}")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if class_names is not None:
        ax.legend(handles[:20], [as_text(n) for n in class_names[:20]], title=legend_title, markerscale=4,
                  loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def history_limit(codes):
    """The half-width of a box that holds 99.9 % of every epoch's codes on both axes: the fixed axes of a run's
    frames (a few codes far out would otherwise shrink every frame to a dot)."""
    return float(torch.quantile(codes.float().abs().flatten(), 0.999)) * 1.05


def latent_dist_over_training_frames(histories, class_names=data.DATASETS["mnist"].classes, legend_title="digit"):
    """One RGB frame per epoch: each model's codes of the same validation images side by side (histories: [(kind,
    code_history)], the checkpoints' code_history), the epoch in each title, each model on its own fixed axes."""
    epochs = max(len(h["epochs"]) for _, h in histories)
    limits = [history_limit(h["codes"]) for _, h in histories]
    frames = []
    for i in range(epochs):
        panels = []
        for (kind, history), limit in zip(histories, limits):
            j = min(i, len(history["epochs"]) - 1)  # a run with fewer epochs keeps showing its last one
            panels.append(figure_to_array(fig := codes_figure(
                history["codes"][j], history["labels"].long(), kind, f"epoch {history['epochs'][j]}", limit,
                class_names, legend_title, size=(4.6, 4.0), dpi=80)))
            plt.close(fig)
        height = max(p.shape[0] for p in panels)
        frames.append(np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255)
                                      for p in panels], axis=1))
    return frames


def save_gif_atomically(path, frames, seconds_per_frame=0.5, last_frame_seconds=2.0):
    """RGB frames as a looping GIF (one shared 64-colour palette, so it stays small), written atomically."""
    from PIL import Image
    images = [Image.fromarray(frame) for frame in frames]
    palette = images[-1].quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    frames_p = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    durations = [int(1000 * seconds_per_frame)] * (len(frames_p) - 1) + [int(1000 * last_frame_seconds)]
    buffer = io.BytesIO()
    frames_p[0].save(buffer, format="GIF", save_all=True, append_images=frames_p[1:], duration=durations, loop=0,
                     optimize=True)
    write_atomically(path, buffer.getvalue())


@torch.no_grad()
def latent_space_figure(model, grid_range=1.5, grid_size=20, codes=None):
    """The decoder over a regular grid of latent points, as one image with latent axes.

    codes (optional, N x 2): drawn faintly on top, to show where the data lives.
    """
    device = next(model.parameters()).device
    tiles = model.decode(latent_grid(grid_range, grid_size).to(device)).cpu()
    half_step = grid_range / (grid_size - 1) if grid_size > 1 else grid_range
    extent = [-grid_range - half_step, grid_range + half_step] * 2
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=DPI)
    show_grid(ax, data.image_grid(tiles, nrow=grid_size, padding=0), extent=extent)
    if codes is not None:
        ax.scatter(codes[:, 0].cpu(), codes[:, 1].cpu(), s=1, alpha=0.15, color="tab:orange", rasterized=True)
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(f"{model_title(model)}: decoder over a {grid_size}×{grid_size} grid on "
                 f"[-{grid_range:g}, {grid_range:g}]²")
    fig.tight_layout()
    return fig


@torch.no_grad()
def sample_from_norm_figure(model, n=100, seed=0):
    """Images decoded from latent codes drawn from the prior N(0, I)."""
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    fig, ax = plt.subplots(figsize=(5.4, 5.8), dpi=DPI)
    show_image_grid(ax, model.decode(z.to(device)), int(round(n ** 0.5)), f"{model_title(model)}: decoded z ~ N(0, I)")
    fig.tight_layout()
    return fig


def interpolation_pairs(labels, digit_pairs=INTERPOLATION_DIGITS):
    """Pairs of test-image indices to walk between: the first image of each of digit_pairs' classes (MNIST's
    pairs when every class is there), else of classes 0-1, 2-3, ... present, else (unlabelled) images 0-1, 2-3, ..."""
    present = sorted(set(labels.cpu().tolist()) - {-1})
    if not all(c in present for pair in digit_pairs for c in pair):
        digit_pairs = list(zip(present[0::2], present[1::2]))[:5]
    if digit_pairs:
        first = {c: int((labels == c).nonzero()[0, 0]) for pair in digit_pairs for c in pair}
        return [(first[a], first[b]) for a, b in digit_pairs]
    return [(i, i + 1) for i in range(0, min(10, len(labels) - 1), 2)]


@torch.no_grad()
def interpolation_figure(model, images, labels, steps=10, digit_pairs=INTERPOLATION_DIGITS):
    """For pairs of test images (digits of two classes): the decoder along the straight line between their codes."""
    rows = []
    for i, j in interpolation_pairs(labels, digit_pairs):
        x_a, x_b = images[i], images[j]
        z_a, z_b = model.encode(torch.stack([x_a, x_b]))
        t = torch.linspace(0, 1, steps, device=z_a.device).unsqueeze(1)
        path = model.decode((1 - t) * z_a + t * z_b)
        rows.append(torch.cat([x_a[None], path, x_b[None]]))
    fig, ax = plt.subplots(figsize=(7.5, 0.63 * len(rows) + 0.9), dpi=DPI)
    show_image_grid(ax, torch.cat(rows), steps + 2,
                    f"{model_title(model)}: straight lines in latent space\n"
                    "(first and last column: the two test images; between: decoded)")
    fig.tight_layout()
    return fig


def figure_to_array(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


def side_by_side(left, right):
    """One image holding two figures next to each other (heights padded with white)."""
    a, b = figure_to_array(left), figure_to_array(right)
    height = max(a.shape[0], b.shape[0])
    pad = lambda img: np.pad(img, ((0, height - img.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
    return np.concatenate([pad(a), pad(b)], axis=1)


def save_atomically(path, figure_or_array):
    """Save a figure (or an RGB array) as a PNG; a crash mid-write leaves the old file whole."""
    buffer = io.BytesIO()
    if isinstance(figure_or_array, np.ndarray):
        plt.imsave(buffer, figure_or_array, format="png", metadata={"Software": None})
    else:
        figure_or_array.savefig(buffer, format="png", metadata={"Software": None})
    write_atomically(path, buffer.getvalue())

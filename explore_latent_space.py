"""Draw the figures that compare the latent spaces of the trained models.

    python explore_latent_space.py                     # every checkpoint in checkpoints/ -> readme/
    python explore_latent_space.py my_run/vae.pt -o out

Each figure is one function named after it: it takes a model (and data) and returns a matplotlib
Figure. The command line only loops over checkpoints and saves. For the two default models the
files are named <figure>_auto.png and <figure>_vae.png; other checkpoints use their file's stem.
"""
import io
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import cli
import data
import models

FIGURE_SUFFIX = {"autoencoder": "auto", "vae": "vae"}  # the seed's names for the two default models
MODEL_TITLE = {"autoencoder": "AutoEncoder", "vae": "VAE"}
INTERPOLATION_DIGITS = [(0, 6), (1, 7), (3, 8), (4, 9), (2, 5)]  # pairs of digits to walk between
DPI = 100


def model_title(model):
    title = MODEL_TITLE[model.kind]
    beta = getattr(model, "beta", 1)
    return title if beta == 1 else f"{title} (β = {beta:g})"


def show_image_grid(ax, images, nrow, title):
    grid = data.image_grid(images.cpu(), nrow=nrow, padding=2, pad_value=1)[0]
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
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


@torch.no_grad()
def encode_in_batches(model, images, batch_size=2000):
    return torch.cat([model.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def project_to_2d(codes):
    """The codes themselves when 2-D, else their projection on the two leading principal axes."""
    if codes.shape[1] == 2:
        return codes, False
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, True


@torch.no_grad()
def latent_dist_figure(model, images, labels, class_names=data.DATASETS["mnist"].classes, legend_title="digit"):
    """Test images encoded onto the latent plane, coloured by class."""
    codes, projected = project_to_2d(encode_in_batches(model, images).cpu())
    fig, ax = plt.subplots(figsize=(6.4, 6), dpi=DPI)
    colours = plt.get_cmap("tab10")
    for label, class_name in enumerate(class_names):
        pts = codes[labels.cpu() == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, color=colours(label), label=class_name, rasterized=True)
    ax.set_aspect("equal", adjustable="datalim")
    what = "codes" if model.kind == "autoencoder" else "posterior means"
    ax.set_title(f"{model_title(model)}: {len(codes):,} test {what}"
                 + (f"\n(PCA projection of the {model.latent_dim}-D codes)" if projected else ""))
    ax.set_xlabel("PC 1" if projected else "$z_1$")
    ax.set_ylabel("PC 2" if projected else "$z_2$")
    ax.legend(title=legend_title, markerscale=5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def latent_grid(grid_range, grid_size):
    """grid_size^2 latent points on [-grid_range, grid_range]^2, row by row from the top (z2 high)."""
    ticks = torch.linspace(-grid_range, grid_range, grid_size)
    z2, z1 = torch.meshgrid(ticks.flip(0), ticks, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1)


@torch.no_grad()
def latent_space_figure(model, grid_range=1.5, grid_size=20, codes=None):
    """The decoder over a regular grid of latent points, as one image with latent axes.

    codes (optional, N x 2): drawn faintly on top, to show where the data lives.
    """
    device = next(model.parameters()).device
    tiles = model.decode(latent_grid(grid_range, grid_size).to(device)).cpu()
    image = data.image_grid(tiles, nrow=grid_size, padding=0)[0].numpy()
    half_step = grid_range / (grid_size - 1) if grid_size > 1 else grid_range
    extent = [-grid_range - half_step, grid_range + half_step] * 2
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=DPI)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
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


@torch.no_grad()
def interpolation_figure(model, images, labels, steps=10, digit_pairs=INTERPOLATION_DIGITS):
    """For pairs of test digits: the decoder along the straight line between their codes."""
    rows = []
    for a, b in digit_pairs:
        x_a = images[(labels == a).nonzero()[0, 0]]
        x_b = images[(labels == b).nonzero()[0, 0]]
        z_a, z_b = model.encode(torch.stack([x_a, x_b]))
        t = torch.linspace(0, 1, steps, device=z_a.device).unsqueeze(1)
        path = model.decode((1 - t) * z_a + t * z_b)
        rows.append(torch.cat([x_a[None], path, x_b[None]]))
    fig, ax = plt.subplots(figsize=(7.5, 0.63 * len(digit_pairs) + 0.9), dpi=DPI)
    show_image_grid(ax, torch.cat(rows), steps + 2,
                    f"{model_title(model)}: straight lines in latent space\n"
                    "(first and last column: the two test images; between: decoded)")
    fig.tight_layout()
    return fig


EXPLORER_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explorer_template.html")


def _base64(array):
    import base64
    return base64.b64encode(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).decode("ascii")


@torch.no_grad()
def explorer_html(pair, images, labels, class_names, num_points=5000):
    """One self-contained HTML page: both decoders' weights, their test codes, and the JavaScript that decodes
    wherever the pointer goes (explorer_template.html). pair: {"autoencoder": model, "vae": model}.

    Weights go in as int16 with one float32 scale per output unit: the size of float16, but the decoded
    pixels stay within 1e-3 of PyTorch's (float16 weights were 3e-3 off on the AutoEncoder's far codes).
    """
    import json
    entries = []
    for kind, model in pair.items():
        layers = []
        for layer in (m for m in model.decoder if isinstance(m, torch.nn.Linear)):
            w = layer.weight.detach().cpu().double()
            scales = w.abs().amax(1).clamp_min(1e-30) / 32767
            quantised = torch.round(w / scales[:, None]).clamp(-32767, 32767)
            layers.append({"rows": w.shape[0], "cols": w.shape[1],
                           "weights": _base64(quantised.numpy().astype(np.int16)),
                           "scales": _base64(scales.numpy().astype(np.float32)),
                           "bias": _base64(layer.bias.detach().cpu().numpy().astype(np.float32))})
        codes = encode_in_batches(model, images[:num_points]).cpu()
        low, high = codes.min(0).values.tolist(), codes.max(0).values.tolist()
        entries.append({"id": kind, "title": model_title(model), "activation": model.model_args["activation"],
                        "layers": layers, "codes": _base64(codes.numpy().astype(np.float32)),
                        "labels": _base64(labels[:num_points].cpu().numpy().astype(np.uint8)),
                        "box": [low[0], high[0], low[1], high[1]]})
    colours = ["#%02x%02x%02x" % tuple(int(255 * c) for c in plt.get_cmap("tab10")(i)[:3]) for i in range(10)]
    payload = json.dumps({"classes": list(class_names), "colours": colours, "models": entries}, separators=(",", ":"))
    with open(EXPLORER_TEMPLATE) as f:
        return f.read().replace("__DATA__", payload.replace("</", "<\\/"))


def explorer_screenshot(html_path, png_path, z=(1.5, -0.5)):
    """A picture of the page as a browser draws it (headless Chromium), for the README; False if there is none."""
    import shutil
    import subprocess
    import tempfile
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        tmp_png = os.path.join(profile, "shot.png")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--virtual-time-budget=5000", "--window-size=1100,640", f"--user-data-dir={profile}",
                        f"--screenshot={tmp_png}", f"file://{os.path.abspath(html_path)}#z={z[0]},{z[1]}"],
                       capture_output=True, timeout=120, check=False)
        if not os.path.exists(tmp_png):
            return False
        with open(tmp_png, "rb") as f:
            cli.write_atomically(png_path, f.read())
    return True


def explorer_pair(loaded):
    """The AutoEncoder and the VAE the page shows: the default pair if present, else the two checkpoints given."""
    by_name = {output_name(path, model.dataset): model for path, model in loaded.items()}
    for dataset in dict.fromkeys(model.dataset for model in loaded.values()):
        auto, vae = by_name.get(dataset_prefix(dataset) + "auto"), by_name.get(dataset_prefix(dataset) + "vae")
        if auto and vae:
            return {"autoencoder": auto, "vae": vae}
    kinds = sorted(model.kind for model in loaded.values())
    if kinds != ["autoencoder", "vae"] or len({m.latent_dim for m in loaded.values()} | {2}) != 1:
        raise cli.UserError("--html shows one AutoEncoder and one VAE with 2-D codes: name one checkpoint of each")
    return {model.kind: model for model in loaded.values()}


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
    cli.write_atomically(path, buffer.getvalue())


def figures_for(model, test, args):
    """{figure name: Figure} for one model: the seed's four figures and the interpolation."""
    torch.manual_seed(args.seed)
    shown = test.images[:32]
    figures = {
        "outputs": outputs_figure(model, shown),
        "latent_dist": latent_dist_figure(model, test.images[:args.num_points], test.labels[:args.num_points],
                                          data.DATASETS[model.dataset].classes, data.DATASETS[model.dataset].noun),
        "sample_from_norm": sample_from_norm_figure(model, seed=args.seed),
    }
    if model.latent_dim == 2:
        codes = encode_in_batches(model, test.images[:args.num_points]) if args.overlay_codes else None
        figures["latent_space"] = latent_space_figure(model, args.grid_range, args.grid_size, codes)
        figures["interpolation"] = interpolation_figure(model, test.images, test.labels)
    else:
        print(f"  latent_dim is {model.latent_dim}: the grid and interpolation figures need a 2-D latent space; skipped")
    return figures


def parse_args(argv=None):
    p = cli.ArgumentParser(
        prog="explore_latent_space.py",
        description="Draw the figures comparing the latent spaces of trained models: for each checkpoint, "
                    "outputs_*.png (reconstructions), latent_dist_*.png (test codes by digit), latent_space_*.png "
                    "(decoder over a latent grid), sample_from_norm_*.png (decoded N(0, I) samples) and "
                    "interpolation_*.png (straight lines between test digits); and, when both autoencoder.pt and "
                    "vae.pt are given, compare_<figure>.png with the two side by side. '*' is 'auto' for "
                    "autoencoder.pt, 'vae' for vae.pt, else the checkpoint's file stem.")
    cli.add_checkpoint_arguments(p)
    p.add_argument("-o", "--output_dir", default="readme", help="where figures go (default: %(default)s)")
    p.add_argument("--dataset", choices=sorted(data.DATASETS), default="mnist",
                   help="which checkpoints of --checkpoint_dir to draw: those trained on this dataset (stored in each "
                        "file); checkpoints named on the command line are drawn whatever their dataset. Figures of "
                        "models of other datasets than mnist are named <figure>_<dataset>_auto.png etc. "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0,
                   help="seed of the N(0, I) samples; the same seed gives the same pixels (default: %(default)s)")
    p.add_argument("--grid_range", type=cli.positive_float, default=1.5,
                   help="the latent grid spans [-R, R] on both axes (default: %(default)s)")
    p.add_argument("--grid_size", type=cli.positive_int, default=20,
                   help="decoded images per side of the latent grid (default: %(default)s)")
    p.add_argument("--num_points", type=cli.positive_int, default=10000,
                   help="test images encoded for the scatter (default: all %(default)s)")
    p.add_argument("--overlay_codes", action="store_true",
                   help="draw the test codes faintly over the latent grid, to show where data lives")
    p.add_argument("--html", action="store_true",
                   help="also write <output_dir>/explorer.html: one self-contained page (no network, no Python) that "
                        "decodes wherever the pointer goes on the latent planes of the AutoEncoder and the VAE "
                        "(autoencoder.pt and vae.pt, or the two checkpoints named)")
    cli.add_device_arguments(p)
    return p.parse_args(argv)


def dataset_prefix(dataset):
    return "" if dataset == "mnist" else f"{dataset}_"


def output_name(checkpoint_path, dataset="mnist"):
    """auto / vae / <stem> for MNIST checkpoints; fashion-mnist_auto, ... for the other dataset's."""
    stem = os.path.splitext(os.path.basename(checkpoint_path))[0]
    prefix = dataset_prefix(dataset)
    if prefix and stem.startswith(prefix):
        stem = stem[len(prefix):]
    return prefix + FIGURE_SUFFIX.get(stem, stem)


def load_selected_checkpoints(args, device="cpu"):
    """{path: model} for the checkpoints named, else those of --dataset in --checkpoint_dir (all checked first)."""
    loaded = {path: models.load_checkpoint(path, map_location=device) for path in cli.checkpoint_paths(args)}
    if not args.checkpoints:
        loaded = {path: model for path, model in loaded.items() if model.dataset == args.dataset}
        if not loaded:
            raise cli.UserError(f"no {args.dataset} checkpoints in {args.checkpoint_dir}/; train some with "
                                f"`python train.py --train_autoencoder --train_vae --dataset {args.dataset}`")
    return loaded


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    plt.switch_backend("Agg")  # files only: no window, even where a display exists
    try:
        device = cli.resolve_device(args)
        loaded = load_selected_checkpoints(args, device)
        cli.writable_dir(args.output_dir)
        test_sets = {}
        figures_by_model = {}
        for path, model in loaded.items():
            if model.dataset not in test_sets:
                test_sets[model.dataset] = data.load_dataset(model.dataset, args.data_dir, device)["test"]
            name = output_name(path, model.dataset)
            print(f"{path}: {model_title(model)}, latent_dim {model.latent_dim}, {model.dataset}")
            figures_by_model[name] = figures_for(model, test_sets[model.dataset], args)
            for figure_name, fig in figures_by_model[name].items():
                save_atomically(os.path.join(args.output_dir, f"{figure_name}_{name}.png"), fig)
        for dataset in test_sets:
            auto, vae = (figures_by_model.get(dataset_prefix(dataset) + n) for n in ("auto", "vae"))
            if auto and vae:
                suffix = "" if dataset == "mnist" else f"_{dataset}"
                for figure_name in auto.keys() & vae.keys():
                    save_atomically(os.path.join(args.output_dir, f"compare_{figure_name}{suffix}.png"),
                                    side_by_side(auto[figure_name], vae[figure_name]))
        if args.html:
            pair = explorer_pair(loaded)
            dataset = next(iter(pair.values())).dataset
            test = test_sets[dataset]
            cli.write_atomically(os.path.join(args.output_dir, "explorer.html"), explorer_html(
                {k: m.cpu() for k, m in pair.items()}, test.images.cpu(), test.labels.cpu(), data.DATASETS[dataset].classes))
            if not explorer_screenshot(os.path.join(args.output_dir, "explorer.html"),
                                       os.path.join(args.output_dir, "explorer.png")):
                print("no chromium here: explorer.png (the page's screenshot) not refreshed")
        plt.close("all")
    except (cli.UserError, data.DataError, models.CheckpointError) as e:
        cli.exit_with_error(str(e))
    except OSError as e:  # the machine's fault, not the user's: a full disk, a read-only or vanished folder
        cli.exit_with_error(cli.os_error_message(e))
    print(f"figures written to {args.output_dir}/ in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()

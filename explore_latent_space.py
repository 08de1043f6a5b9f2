"""Draw the figures that compare the latent spaces of the trained models.

    python explore_latent_space.py                     # every checkpoint in checkpoints/ -> readme/
    python explore_latent_space.py my_run/vae.pt -o out
    python explore_latent_space.py --html              # also readme/explorer.html, the browser page

The figures themselves are functions in lab/figures.py (one per figure, each returning a Figure); this
script loops over checkpoints and saves them. For the two default models the files are named
<figure>_auto.png and <figure>_vae.png; other checkpoints use their file's stem.
"""
import os
import time

import matplotlib.pyplot as plt
import torch

import data
from lab import cli, config
from lab.config import EvalConfig, TrainConfig
from lab.explorer_page import explorer_html, explorer_pair, explorer_screenshot
from lab.figures import (interpolation_figure, latent_dist_figure, latent_dist_over_training_frames,
                         latent_space_figure, model_title, outputs_figure, sample_from_norm_figure, save_atomically,
                         save_gif_atomically, side_by_side)
from lab.files import UserError, write_atomically, writable_dir
from models import encode_in_batches, read_checkpoint


def data_key(model):
    return model.dataset, str((model.data_source or {}).get("image_size"))


def check_explorer_pair(pair):
    """The browser page stores each code's class in one byte."""
    model = next(iter(pair.values()))
    if len(data.class_names(model) or []) > 255:
        raise UserError(f"--html: the browser page colours 255 classes at most; {model.dataset} has "
                        f"{len(data.class_names(model))}")


def figures_for(model, test, args):
    """{figure name: Figure} for one model: the original project's four figures and the interpolation."""
    torch.manual_seed(args.sample_seed)
    shown = test.images[:32]
    figures = {
        "outputs": outputs_figure(model, shown),
        "latent_dist": latent_dist_figure(model, test.images[:args.num_points], test.labels[:args.num_points],
                                          data.class_names(model), data.DATASETS[model.dataset].noun
                                          if model.dataset in data.DATASETS else "class"),
        "sample_from_norm": sample_from_norm_figure(model, seed=args.sample_seed),
    }
    if model.latent_dim == 2:
        codes = encode_in_batches(model, test.images[:args.num_points]) if args.overlay_codes else None
        figures["latent_space"] = latent_space_figure(model, args.grid_range, args.grid_size, codes)
        figures["interpolation"] = interpolation_figure(model, test.images, test.labels)
    else:
        print(f"  latent_dim is {model.latent_dim}: the grid and interpolation figures need a 2-D latent space; skipped")
    return figures


def draw_training_animation(paths, models_by_path, output_dir, suffix):
    """latent_dist_over_training<suffix>.gif: the AutoEncoder's and the VAE's codes of the same validation images,
    epoch by epoch, side by side, from the histories their checkpoints keep (older files keep none: one line)."""
    histories = []
    for path in paths:
        history = read_checkpoint(path).get("code_history")
        if history is None:
            print(f"{path}: no codes over training in this checkpoint (trained before runs kept them); "
                  f"latent_dist_over_training{suffix}.gif not drawn")
            return None
        histories.append((models_by_path[path].kind, history))
    model = models_by_path[paths[0]]
    noun = data.DATASETS[model.dataset].noun if model.dataset in data.DATASETS else "class"
    frames = latent_dist_over_training_frames(histories, data.class_names(model), noun)
    name = f"latent_dist_over_training{suffix}.gif"
    save_gif_atomically(os.path.join(output_dir, name), frames)
    for kind, history in histories:  # how far the codes reach, epoch by epoch (the README's sentence about the GIF)
        reach = torch.quantile(history["codes"].float().norm(dim=2), 0.99, dim=1)
        print(f"  {name}: {kind} codes' 99th-percentile radius by epoch: "
              + " ".join(f"{e}:{r:.2f}" for e, r in zip(history["epochs"], reach.tolist())))
    return name


def parse_args(argv=None):
    p = cli.ArgumentParser(
        prog="explore_latent_space.py",
        description="Draw the figures comparing the latent spaces of trained models: for each checkpoint, "
                    "outputs_*.png (reconstructions), latent_dist_*.png (test codes by digit), latent_space_*.png "
                    "(decoder over a latent grid), sample_from_norm_*.png (decoded N(0, I) samples) and "
                    "interpolation_*.png (straight lines between test digits); and, when both autoencoder.pt and "
                    "vae.pt are given, compare_<figure>.png with the two side by side. '*' is 'auto' for "
                    "autoencoder.pt, 'vae' for vae.pt, else the checkpoint's file stem.")
    cli.add_checkpoints_argument(p)
    config.add_flags(p, TrainConfig, ["checkpoint_dir", "data_dir"], helps={
        "checkpoint_dir": "where to find checkpoints (default: %(default)s)"})
    p.add_argument("-o", "--output_dir", default="readme", help="where figures go (default: %(default)s)")
    config.add_flags(p, TrainConfig, ["dataset"], helps={
        "dataset": "which checkpoints of --checkpoint_dir to draw: those trained on this dataset (stored in each "
                   "file); checkpoints named on the command line are drawn whatever their dataset. Figures of "
                   "models of other datasets than mnist are named <figure>_<dataset>_auto.png etc. For your "
                   "own images, " + cli.DATASET_HELP + "; without it, a checkpoint's images are read from where "
                   "they were when it was trained (default: %(default)s)"})
    config.add_flags(p, EvalConfig, ["sample_seed", "grid_range", "grid_size"], helps={
        "sample_seed": "seed of the N(0, I) samples; the same seed gives the same pixels (default: %(default)s; "
                       "--seed is its old spelling)",
        "grid_range": "the latent grid spans [-R, R] on both axes (default: %(default)s)",
        "grid_size": "decoded images per side of the latent grid (default: %(default)s)"})
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


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    plt.switch_backend("Agg")  # files only: no window, even where a display exists
    with cli.errors_as_one_line():
        device = cli.resolve_device(args)
        loaded = cli.load_selected_checkpoints(args, device)
        names = cli.output_names(loaded, lambda path: loaded[path].dataset)  # the figures' file names
        test_sets = {}  # by dataset and image size (one folder can train models at several --image_size)
        for model in loaded.values():  # every model's images found and checked before anything is written
            if data_key(model) not in test_sets:
                test_sets[data_key(model)] = data.load_dataset_of(model, args.data_dir, device, args.dataset)["test"]
        if args.html:
            pair = explorer_pair(loaded)
            check_explorer_pair(pair)
        writable_dir(args.output_dir)
        figures_by_model = {}
        for path, model in loaded.items():
            name = names[path]
            print(f"{path}: {model_title(model)}, latent_dim {model.latent_dim}, {model.dataset}")
            figures_by_model[name] = figures_for(model, test_sets[data_key(model)], args)
            for figure_name, fig in figures_by_model[name].items():
                save_atomically(os.path.join(args.output_dir, f"{figure_name}_{name}.png"), fig)
        for dataset in dict.fromkeys(model.dataset for model in loaded.values()):
            auto, vae = (figures_by_model.get(cli.dataset_prefix(dataset) + n) for n in ("auto", "vae"))
            if auto and vae:
                suffix = "" if dataset == "mnist" else f"_{dataset}"
                for figure_name in auto.keys() & vae.keys():
                    save_atomically(os.path.join(args.output_dir, f"compare_{figure_name}{suffix}.png"),
                                    side_by_side(auto[figure_name], vae[figure_name]))
                pair_paths = [next(p for p in loaded if names[p] == cli.dataset_prefix(dataset) + n)
                              for n in ("auto", "vae")]
                if all(loaded[p].latent_dim == 2 for p in pair_paths):
                    draw_training_animation(pair_paths, loaded, args.output_dir, suffix)
        if args.html:
            model = next(iter(pair.values()))
            test = test_sets[data_key(model)]
            paths = {kind: next(p for p, m in loaded.items() if m is chosen) for kind, chosen in pair.items()}
            histories = {kind: h for kind, p in paths.items() if (h := read_checkpoint(p).get("code_history"))}
            write_atomically(os.path.join(args.output_dir, "explorer.html"), explorer_html(
                {k: m.cpu() for k, m in pair.items()}, test.images.cpu(), test.labels.cpu(), data.class_names(model) or [],
                histories=histories if len(histories) == len(pair) else None))
            if not explorer_screenshot(os.path.join(args.output_dir, "explorer.html"),
                                       os.path.join(args.output_dir, "explorer.png")):
                print("no chromium here: explorer.png (the page's screenshot) not refreshed")
        plt.close("all")
    print(f"figures written to {args.output_dir}/ in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()

import os

import numpy as np
import pytest
import torch
from PIL import Image

import explore_latent_space as explore
import models

from lab import figures, measures
from conftest import DATA_DIR, ROOT, run_script

SEED_FIGURES = ["outputs", "latent_dist", "latent_space", "sample_from_norm"]


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Untrained tiny models are enough to test files, shapes and determinism."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    models.save_checkpoint(folder / "autoencoder.pt", models.AutoEncoder(hidden_dims=[32]))
    models.save_checkpoint(folder / "vae.pt", models.VAE(hidden_dims=[32]))
    return folder


def run_cli(*args, cwd=ROOT):
    return run_script("explore_latent_space.py", *args, cwd=cwd)


def explore_error(capsys, *args):
    """Run the script's main in this process (no interpreter start-up); its exit code and stderr."""
    with pytest.raises(SystemExit) as stop:
        explore.main([*args, "--data_dir", DATA_DIR])
    return stop.value.code, capsys.readouterr().err


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def explore_into(out, checkpoint_dir, *extra):
    explore.main(["--checkpoint_dir", str(checkpoint_dir), "-o", str(out), "--data_dir", DATA_DIR,
                  "--num_points", "2000", *extra])


@pytest.mark.slow
def test_every_figure_is_written_as_a_sensible_png(tmp_path, tiny_checkpoints, capsys):
    explore_into(tmp_path, tiny_checkpoints)
    # checkpoints without codes over training (older files): one line says so, every other figure is drawn
    assert "no codes over training in this checkpoint" in capsys.readouterr().out
    expected = [f"{fig}_{name}.png" for fig in SEED_FIGURES + ["interpolation"] for name in ("auto", "vae")]
    expected += [f"compare_{fig}.png" for fig in SEED_FIGURES + ["interpolation"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    for name in expected:
        pixels = read_png(tmp_path / name)
        height, width, _ = pixels.shape
        assert 200 <= height <= 2000 and 300 <= width <= 3000, (name, pixels.shape)
        assert pixels.std() > 10, f"{name} looks blank"


@pytest.mark.slow
def test_same_seed_gives_the_same_pixels_and_another_seed_other_samples(tmp_path, tiny_checkpoints):
    explore_into(tmp_path / "a", tiny_checkpoints)
    explore_into(tmp_path / "b", tiny_checkpoints)
    explore_into(tmp_path / "c", tiny_checkpoints, "--seed", "1")
    for name in os.listdir(tmp_path / "a"):
        assert np.array_equal(read_png(tmp_path / "a" / name), read_png(tmp_path / "b" / name)), name
    assert not np.array_equal(read_png(tmp_path / "a" / "sample_from_norm_vae.png"),
                              read_png(tmp_path / "c" / "sample_from_norm_vae.png"))


def test_latent_grid_runs_top_left_to_bottom_right():
    grid = measures.latent_grid(1.5, 3)
    assert grid[0].tolist() == [-1.5, 1.5]  # top left: z1 low, z2 high
    assert grid[-1].tolist() == [1.5, -1.5]
    assert len(grid) == 9


def test_figure_functions_return_figures_for_a_model(tiny_checkpoints):
    model = models.load_checkpoint(tiny_checkpoints / "vae.pt")
    images = torch.rand(40, 1, 28, 28)
    labels = torch.arange(40) % 10
    for fig in [figures.outputs_figure(model, images[:8]), figures.latent_dist_figure(model, images, labels),
                figures.latent_space_figure(model, 1.0, 4, codes=model.encode(images)),
                figures.sample_from_norm_figure(model, n=16), figures.interpolation_figure(model, images, labels)]:
        assert fig.axes


def test_higher_dimensional_latents_get_a_pca_scatter_and_skip_the_grid(tmp_path, capsys):
    models.save_checkpoint(tmp_path / "vae5.pt", models.VAE(hidden_dims=[16], latent_dim=5))
    explore.main([str(tmp_path / "vae5.pt"), "-o", str(tmp_path / "out"), "--data_dir", DATA_DIR, "--num_points", "500"])
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["latent_dist_vae5.png", "outputs_vae5.png", "sample_from_norm_vae5.png"]
    assert "skipped" in capsys.readouterr().out
    fig = figures.latent_dist_figure(models.load_checkpoint(tmp_path / "vae5.pt"), torch.rand(50, 1, 28, 28),
                                     torch.arange(50) % 10)
    assert "PCA" in fig.axes[0].get_title()


def test_help_explains_every_option():
    result = run_cli("-h")
    assert result.returncode == 0
    for flag in ["--checkpoint_dir", "--output_dir", "--data_dir", "--seed", "--grid_range", "--grid_size",
                 "--num_points", "--overlay_codes"]:
        assert flag in result.stdout


def test_no_checkpoints_is_a_clear_error(tmp_path):
    result = run_cli("--checkpoint_dir", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.startswith("error: no checkpoints")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"PK\x03\x04 truncated zip"])
def test_unreadable_checkpoint_is_a_clear_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    code, err = explore_error(capsys, str(bad), "-o", str(tmp_path / "out"))
    assert code == 2 and err.startswith(f"error: {bad}: ") and len(err.strip().splitlines()) == 1
    assert "weights_only` set to `False" not in err  # never pass on torch's advice to load unsafely
    assert not (tmp_path / "out").exists()


def test_foreign_checkpoint_is_a_clear_error(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    code, err = explore_error(capsys, str(foreign), "-o", str(tmp_path / "out"))
    assert code == 2 and "not a checkpoint of this project" in err


def test_unwritable_output_folder_is_a_clear_error(tmp_path, capsys, tiny_checkpoints):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code, err = explore_error(capsys, "--checkpoint_dir", str(tiny_checkpoints), "-o", str(blocker / "out"))
    assert code == 2 and err.startswith(f"error: {blocker / 'out'}")


def with_history(path, epochs, images=300, seed=0):
    """A tiny checkpoint with a made-up code_history: codes that spread wider epoch by epoch."""
    generator = torch.Generator().manual_seed(seed)
    checkpoint = models.read_checkpoint(path)
    checkpoint["code_history"] = {
        "index": torch.arange(images, dtype=torch.int32), "labels": (torch.arange(images) % 10).to(torch.int16),
        "epochs": list(range(1, epochs + 1)),
        "codes": torch.stack([torch.randn(images, 2, generator=generator) * (1 + e) for e in range(epochs)]).half()}
    torch.save(checkpoint, path)


@pytest.mark.slow
def test_the_training_animation_has_one_looping_frame_per_epoch_on_fixed_axes(tmp_path, tiny_checkpoints):
    import shutil
    for name in ("autoencoder.pt", "vae.pt"):
        shutil.copy(tiny_checkpoints / name, tmp_path / name)
        with_history(tmp_path / name, epochs=4)
    explore.draw_training_animation([str(tmp_path / "autoencoder.pt"), str(tmp_path / "vae.pt")],
                                    {str(tmp_path / n): models.load_checkpoint(tmp_path / n)
                                     for n in ("autoencoder.pt", "vae.pt")}, str(tmp_path), "")
    gif = Image.open(tmp_path / "latent_dist_over_training.gif")
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.info["loop"] == 0
    assert (tmp_path / "latent_dist_over_training.gif").stat().st_size < 2_000_000
    sizes = set()
    for frame in range(gif.n_frames):
        gif.seek(frame)
        sizes.add(gif.size)
    assert len(sizes) == 1  # every frame the same size: fixed axes, both models side by side
    frames = figures.latent_dist_over_training_frames(
        [(kind, models.read_checkpoint(tmp_path / f"{kind}.pt")["code_history"]) for kind in ("autoencoder", "vae")])
    assert len(frames) == 4 and frames[0].shape == frames[-1].shape and not np.array_equal(frames[0], frames[-1])

"""The latent explorer page in a real browser: Debian's chromium, headless (`.ci/run` installs it)."""
import os
import re
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pytest
import torch

import explore_latent_space as explore
import models

from conftest import DATA_DIR, ROOT

pytestmark = pytest.mark.slow  # a real headless browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the flags a sandboxed root process on a machine without a network needs (no background fetches)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--virtual-time-budget=5000"]
POINTS = [(0.0, 0.0), (1.5, -0.5), (-20.0, 10.0), (3.0, 3.0)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer")
    explore.main([f"{ROOT}/checkpoints/autoencoder.pt", f"{ROOT}/checkpoints/vae.pt", "-o", str(out), "--html",
                  "--num_points", "500", "--data_dir", DATA_DIR])
    return out / "explorer.html"


def chromium(page, tmp_path, *args, z):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium); the page is not tested in a browser")
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args,
                             f"file://{page}#z={z[0]},{z[1]}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_page_is_one_self_contained_file_that_cannot_fetch_anything(page):
    html = page.read_text()
    assert page.stat().st_size < 3_000_000
    assert not re.findall(r"https?://|\bsrc=|url\(|@import", html)
    # and should a future edit add a request, the browser refuses it: the page forbids every fetch itself
    assert "Content-Security-Policy\" content=\"default-src 'none'" in html


@pytest.mark.parametrize("z", POINTS)
def test_the_page_decodes_the_point_in_its_address_as_pytorch_does(page, tmp_path, z):
    dom = chromium(page, tmp_path, "--dump-dom", z=z)
    for kind in ("autoencoder", "vae"):
        match = re.search(rf'id="decoded-{kind}"[^>]*data-pixels="([^"]+)"', dom)
        assert match, f"no data-pixels on #decoded-{kind}"
        in_browser = torch.tensor([float(v) for v in match.group(1).split(",")])
        with torch.no_grad():
            in_pytorch = models.load_checkpoint(f"{ROOT}/checkpoints/{kind}.pt").decode(torch.tensor([z])).flatten()
        assert len(in_browser) == 784
        assert (in_browser - in_pytorch).abs().max().item() <= 2e-3


def test_a_screenshot_of_the_page_shows_the_planes_and_digits(page, tmp_path):
    chromium(page, tmp_path, "--window-size=1100,640", f"--screenshot={tmp_path / 'shot.png'}", z=(1.5, -0.5))
    image = matplotlib.image.imread(tmp_path / "shot.png")[..., :3]
    not_white = (image < 0.9).any(-1).mean()
    colours = len(np.unique((image * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert not_white > 0.05 and colours > 100


def test_the_page_draws_a_colour_model_of_any_size_and_shows_hostile_class_names_as_text(tmp_path):
    import train
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiles.npz", images=rng.integers(0, 256, (60, 8, 6, 3), dtype=np.uint8),
             labels=rng.integers(0, 3, 60), classes=np.array(["a", "<img src=x onerror=alert(1)>", "c"]))
    train.main(["--train_autoencoder", "--train_vae", "--epochs", "1", "--hidden_dims", "8",
                "--dataset", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                "--logdir", str(tmp_path / "logs")])
    explore.main(["--dataset", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                  "-o", str(tmp_path / "out"), "--html", "--num_points", "20", "--grid_size", "3"])
    z = (0.5, -0.25)
    dom = chromium(tmp_path / "out" / "explorer.html", tmp_path, "--dump-dom", z=z)
    match = re.search(r'id="decoded-vae"[^>]*data-pixels="([^"]+)"', dom)
    in_browser = torch.tensor([float(v) for v in match.group(1).split(",")])
    with torch.no_grad():
        in_pytorch = models.load_checkpoint(tmp_path / "ck" / "tiles_vae.pt").decode(torch.tensor([z])).flatten()
    assert len(in_browser) == 3 * 8 * 6 and (in_browser - in_pytorch).abs().max().item() <= 2e-3
    outside_scripts = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # the data block holds the name as JSON
    assert "<img" not in outside_scripts and "&lt;img src=x onerror=alert(1)&gt;" in outside_scripts  # shown as text


def test_the_committed_training_animation_opens_in_the_browser(tmp_path):
    """readme/latent_dist_over_training.gif, as the README shows it: the browser decodes it at its own size."""
    gif = os.path.join(ROOT, "readme", "latent_dist_over_training.gif")
    if not os.path.exists(gif):
        pytest.fail("readme/latent_dist_over_training.gif is missing: python explore_latent_space.py draws it")
    from PIL import Image
    width, height = Image.open(gif).size
    html = tmp_path / "gif.html"
    html.write_text(f'<html><body><img id="g" src="file://{gif}" onload="document.title = '
                    f"this.naturalWidth + 'x' + this.naturalHeight\"></body></html>")
    dom = chromium(html, tmp_path, "--dump-dom", z=(0, 0))
    assert f"<title>{width}x{height}</title>" in dom


def test_the_page_has_a_slider_over_the_epochs_the_checkpoints_kept(page, tmp_path):
    """The committed checkpoints keep 20 epochs of codes: the slider spans them and, at its end, the test codes."""
    final = chromium(page, tmp_path, "--dump-dom", z=(0.0, 0.0))
    assert re.search(r'id="epoch"[^>]*max="21"', final) or re.search(r'max="21"[^>]*id="epoch"', final)
    assert "finished: the test codes" in final
    early = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom",
                            f"file://{page}#z=0,0&epoch=3"], capture_output=True, text=True, timeout=120).stdout
    assert "epoch 3: 2000 validation codes" in early
    assert page.stat().st_size < 2_500_000

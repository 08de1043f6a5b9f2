"""The latent explorer: one self-contained HTML page (explorer_template.html, no network, no Python) that
decodes wherever the pointer goes on the latent planes of an AutoEncoder and a VAE."""
import os

import numpy as np
import torch

from lab.cli import dataset_prefix, output_name
from lab.figures import class_colours, model_title
from lab.files import UserError, write_atomically
from models import encode_in_batches

EXPLORER_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explorer_template.html")


def _base64(array):
    import base64
    return base64.b64encode(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).decode("ascii")


@torch.no_grad()
def history_entry(history):
    """A run's codes over training for the page: int16 with one scale (2 000 codes x epochs at half float32's size)."""
    codes = history["codes"].float()
    scale = max(float(codes.abs().max()), 1e-30) / 32767
    return {"epochs": list(history["epochs"]), "scale": scale,
            "codes": _base64(torch.round(codes / scale).numpy().astype(np.int16)),
            "labels": _base64(history["labels"].clamp_min(0).numpy().astype(np.uint8))}


def explorer_html(pair, images, labels, class_names, num_points=5000, histories=None):
    """One self-contained HTML page: both decoders' weights, their test codes, and the JavaScript that decodes
    wherever the pointer goes (explorer_template.html). pair: {"autoencoder": model, "vae": model}; histories
    (optional, {kind: code_history}): each model's codes over training, for the page's slider over epochs.

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
                        "labels": _base64(labels[:num_points].clamp_min(0).cpu().numpy().astype(np.uint8)),  # unlabelled (-1): one colour
                        "box": [low[0], high[0], low[1], high[1]],
                        **({"history": history_entry(histories[kind])} if histories and kind in histories else {})})
    colours = ["#%02x%02x%02x" % tuple(int(255 * c) for c in colour[:3]) for colour in class_colours(max(10, len(class_names)))]
    shape = list(next(iter(pair.values())).image_shape)
    payload = json.dumps({"classes": list(class_names), "colours": colours, "shape": shape, "models": entries},
                         separators=(",", ":"))
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
            write_atomically(png_path, f.read())
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
        raise UserError("--html shows one AutoEncoder and one VAE with 2-D codes: name one checkpoint of each")
    return {model.kind: model for model in loaded.values()}

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

# the `jupyter` that `pip install -r requirements.txt` put beside this Python (a venv's bin/, or the user's scripts)
JUPYTER = os.path.join(os.path.dirname(sys.executable), "jupyter")


@pytest.mark.slow
def test_the_readmes_notebook_command_is_installed():
    result = subprocess.run([JUPYTER, "notebook", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()[0].isdigit()


@pytest.mark.slow
def test_notebook_executes_through_the_installed_jupyter(tmp_path):
    result = subprocess.run([JUPYTER, "nbconvert", "--to", "notebook", "--execute", "notebook.ipynb",
                             "--output-dir", str(tmp_path), "--ExecutePreprocessor.timeout=120"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import nbformat  # 3 s of imports (jsonschema): only in this slow test, not in every collection
    notebook = nbformat.read(tmp_path / "notebook.ipynb", as_version=4)
    images = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 11  # 2 models x 5 figures + the decoded points (+ the marked scatters)
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # the sliders span each model's own codes: the AutoEncoder's reach far wider than the VAE's
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    spans = {}
    for name in ("AutoEncoder", "VAE"):
        match = re.search(rf"{name}: codes span z1 in \[(\S+), (\S+)\], z2 in \[(\S+), (\S+)\]", printed)
        assert match, f"no slider range printed for {name}"
        low1, high1, low2, high2 = map(float, match.groups())
        spans[name] = max(high1 - low1, high2 - low2)
    assert spans["AutoEncoder"] > 2 * spans["VAE"] > 6
    # the committed checkpoints keep their codes over training: the slider over epochs has 20 to show
    assert "20 epochs kept, 2000 validation images each" in printed


@pytest.mark.slow
def test_notebook_runs_on_your_own_colour_images(tmp_path):
    import json
    import numpy as np
    import train
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiles.npz", images=rng.integers(0, 256, (60, 8, 6, 3), dtype=np.uint8))  # unlabelled
    train.main(["--train_autoencoder", "--train_vae", "--epochs", "1", "--hidden_dims", "8",
                "--dataset", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                "--logdir", str(tmp_path / "logs")])
    with open(os.path.join(ROOT, "notebook.ipynb")) as f:
        notebook = json.load(f)
    setup = "".join(notebook["cells"][1]["source"])
    assert 'DATASET = "mnist"' in setup and 'CHECKPOINT_DIR = "checkpoints"' in setup
    setup = setup.replace('DATASET = "mnist"', f'DATASET = {str(tmp_path / "tiles.npz")!r}').replace(
        'CHECKPOINT_DIR = "checkpoints"', f'CHECKPOINT_DIR = {str(tmp_path / "ck")!r}')
    # the kernel starts in the copy's folder: it finds the project's modules and data from the repository
    setup = setup.replace("import data\n", f"import os, sys\nos.chdir({ROOT!r})\nsys.path.insert(0, {ROOT!r})\nimport data\n")
    notebook["cells"][1]["source"] = setup
    (tmp_path / "own.ipynb").write_text(json.dumps(notebook))
    result = subprocess.run([JUPYTER, "nbconvert", "--to", "notebook", "--execute", str(tmp_path / "own.ipynb"),
                             "--output-dir", str(tmp_path / "out"), "--ExecutePreprocessor.timeout=120"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    executed = json.loads((tmp_path / "out" / "own.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "'image_shape': [3, 8, 6]" in printed and "test image 0\n" in printed  # no class to name

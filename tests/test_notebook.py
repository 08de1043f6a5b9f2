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

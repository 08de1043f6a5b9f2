import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def test_notebook_executes_headless_with_the_committed_checkpoints():
    notebook = nbformat.read(f"{ROOT}/notebook.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    images = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 11  # 2 models x 5 figures + the decoded point (+ the marked scatters)
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors

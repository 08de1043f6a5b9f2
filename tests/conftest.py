import contextlib
import importlib
import io
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data  # noqa: E402

DATA_DIR = os.path.join(ROOT, "data")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="run the slow tier instead of the fast one: Jupyter, Chromium, whole-study and whole-sweep "
                          "runs, real-size trainings, the scripts as subprocesses (tests marked slow)")


def pytest_collection_modifyitems(config, items):
    """`python -m pytest` runs the fast tier (under a minute on 2 cores); `--slow` the slow tier; CI runs both."""
    slow = config.getoption("--slow")
    keep = [item for item in items if (item.get_closest_marker("slow") is not None) == slow]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(scope="session")
def mnist():
    """The real bundled MNIST splits (loaded once per test session)."""
    return data.load_dataset("mnist", DATA_DIR)


@pytest.fixture(scope="session")
def binarized_mnist():
    """The real bundled binarised MNIST splits (loaded once per test session; tests only read them)."""
    return data.load_dataset("binarized-mnist", DATA_DIR)


@pytest.fixture
def mnist_copy(tmp_path):
    """A private copy of the bundled .gz files, for tests that damage them."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_SHA256:
        shutil.copy(os.path.join(DATA_DIR, "MNIST", "raw", name + ".gz"), raw)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def run_script(script, *args, cwd=None):
    """Run a script's main(argv) in this process (no interpreter start-up: the fast tier's way to test a
    command line) and return what a subprocess run would: exit status, stdout and stderr."""
    main = importlib.import_module(script.removesuffix(".py")).main
    out, err, code = io.StringIO(), io.StringIO(), 0
    previous = os.getcwd()
    # a script's main installs its SIGTERM handler (a stop that keeps the last epoch): that is the script's
    # process's, not this one's, so it is put back, as the working folder is
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        os.chdir(cwd or previous)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        os.chdir(previous)
        for number, handler in handlers.items():
            if handler is not None:  # None: a handler set outside Python, which Python cannot put back
                signal.signal(number, handler)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def lock_held_elsewhere(path):
    """Another process holding the writer's lock of path (as a running train.py would); released on exit."""
    code = ("import sys, time; from lab.files import WriterLock; lock = WriterLock(sys.argv[1]).__enter__(); "
            "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()

"""What made a result file: the commit, the libraries, the machine, the command and how long it took.

Runs repeat exactly only on one processor and library build (docs/study.md), so every result file says which."""
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args):
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _version(module):
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def code_state():
    """The commit the code is at and whether tracked code files differ from it (None, None outside git): what
    a checkpoint records as the code that trained it."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "*.py", "*.html", "*.txt", "*.ipynb")
    return {"commit": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def last_commit_of(path):
    """The last commit that changed the file at path, and whether the file differs from it now (None, None when
    it is not in git)."""
    commit = _git("log", "-1", "--format=%H", "--", os.path.abspath(path))
    status = _git("status", "--porcelain", "--", os.path.abspath(path))
    return (commit or None), (None if status is None or not commit else bool(status))


def added_commit_of(path):
    """The commit that added the file at path (None when it is not in git)."""
    found = _git("log", "--diff-filter=A", "--format=%H", "--", os.path.abspath(path))
    return found.splitlines()[-1] if found else None


def is_ancestor(older, newer):
    """Whether commit `older` is an ancestor of (or is) commit `newer`."""
    try:
        result = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=ROOT, capture_output=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def provenance(command, wall_seconds, jobs, device="cpu"):
    """The provenance block of a result file. commit is None outside a git checkout; dirty says whether tracked
    code files (not results or checkpoints) differed from it; wall_seconds is what the caller measured (the study: every invocation that worked
    on its runs)."""
    import torch
    device = torch.device(device)
    # the code's state: result files and checkpoints the run itself rewrites do not make it dirty
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "*.py", "*.html", "*.txt", "*.ipynb")
    return {"commit": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": _version("numpy"),
            "scipy": _version("scipy"), "sklearn": _version("sklearn"), "torchmetrics": _version("torchmetrics"),
            "cpu": cpu_name(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else
            ("Apple MPS" if device.type == "mps" else None),
            "threads": torch.get_num_threads(), "jobs": jobs,
            "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
            "command": command}

"""The study's runs on a Dask cluster (study.py --scheduler): a LocalCluster on the loopback address gives the same
records as the local path, a worker killed mid-run still ends in a complete study, and a bug's traceback is kept
in the run's log file (slow tier: each starts a cluster and trains real, if tiny, runs)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import DATA_DIR, ROOT, run_script

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    from distributed import LocalCluster
    # workers import the project the way a user's would: PYTHONPATH (spawned processes also get this sys.path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local


def quick(folder, *extra):
    return ["--quick", "--datasets", "mnist", "--checkpoint_dir", str(folder / "ck"), "-o", str(folder / "out"),
            "--data_dir", DATA_DIR, "--logdir", str(folder / "logs"), "--threads", "1", *extra]


def test_a_study_on_a_local_cluster_gives_the_same_records_as_the_local_path(tmp_path, cluster):
    on_cluster = run_script("study.py", *quick(tmp_path / "cluster", "--scheduler", cluster.scheduler_address))
    assert on_cluster.returncode == 0, on_cluster.stderr
    local = run_script("study.py", *quick(tmp_path / "local", "--jobs", "2"))
    assert local.returncode == 0, local.stderr
    a, b = (json.loads((tmp_path / where / "out" / "study.json").read_text()) for where in ("cluster", "local"))
    assert [(r["model"], r["seed"]) for r in a["runs"]] == [(r["model"], r["seed"]) for r in b["runs"]]
    for x, y in zip(a["runs"], b["runs"]):
        assert x["metrics"] == y["metrics"] and x["samplers"] == y["samplers"], (x["model"], x["seed"])
    assert [c["p"] for c in a["comparisons"]] == [c["p"] for c in b["comparisons"]]
    # every run left its log beside its checkpoint: what it printed while it trained and was evaluated
    log = (tmp_path / "cluster" / "ck" / "study" / "mnist-seed1" / "vae.log").read_text()
    assert "mnist-vae-seed1" in log and "vae epoch  1/1" in log


def test_a_worker_killed_mid_run_still_ends_in_a_complete_study(tmp_path, cluster):
    ck = tmp_path / "ck"
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "study.py"),
                                *quick(tmp_path, "--scheduler", cluster.scheduler_address)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # a run's log names the worker process that started it: kill that process with SIGKILL while the run is on
    deadline, victim = time.time() + 120, None
    while time.time() < deadline and victim is None:
        for log in ck.rglob("*.log"):
            found = re.search(r"\(pid (\d+)\)", log.read_text())
            if found:
                victim, killed_log = int(found.group(1)), log
                break
        time.sleep(0.05)
    assert victim is not None, "no run started within two minutes"
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    result = json.loads((tmp_path / "out" / "study.json").read_text())
    assert sorted((r["model"], r["seed"]) for r in result["runs"]) == \
        [("autoencoder", 0), ("autoencoder", 1), ("vae", 0), ("vae", 1)]
    # Dask ran the killed run's task again, on a worker of its own choosing, and that attempt finished it
    assert killed_log.read_text().count("--- ") >= 2
    assert not [p for p in ck.rglob("*") if p.name.endswith(".lock") or ".pt.tmp" in p.name]


def test_a_run_that_fails_on_a_bug_keeps_its_traceback_and_the_error_line_names_the_file(tmp_path, monkeypatch):
    from lab import seed_study

    def broken(model, splits, reference, study):
        raise ZeroDivisionError("a bug in a measure")
    monkeypatch.setattr(seed_study, "evaluate_run", broken)
    result = run_script("study.py", *quick(tmp_path, "--jobs", "1", "--seeds", "0"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 2, result.stderr
    for line in errors:
        log = re.search(r"traceback in (\S+)\)", line).group(1)
        assert "ZeroDivisionError: a bug in a measure" in line
        text = open(log).read()
        assert "Traceback (most recent call last)" in text and "in broken" in text


def test_no_scheduler_at_the_address_is_one_error_line(tmp_path):
    result = run_script("study.py", *quick(tmp_path, "--scheduler", "tcp://127.0.0.1:9"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1 and "no Dask scheduler answers" in errors[0]
    assert "Traceback" not in result.stderr

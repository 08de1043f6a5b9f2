"""The confirmatory study (study.py --plan): the plan's runs and tests, the lock that refuses a changed plan, and
verdicts that scipy recomputes from the per-seed values."""
import json
import os
import subprocess

import pytest
from scipy import stats

from conftest import DATA_DIR, ROOT, run_script
from lab import confirmatory, seed_statistics, training
from lab.files import UserError

PLAN = os.path.join(ROOT, "studies", "confirmatory.toml")


def tiny_plan(folder, n=2):
    """The committed plan with n runs per model (its first seeds), as a file of its own."""
    text = open(PLAN).read()
    assert "\nn = 20 " in text
    path = folder / "tiny.toml"
    path.write_text(text.replace("\nn = 20 ", f"\nn = {n} "))
    return path


def quick_plan(folder, plan, *extra):
    return ["--quick", "--plan", str(plan), "--checkpoint_dir", str(folder / "ck"), "-o", str(folder / "out"),
            "--data_dir", DATA_DIR, "--logdir", str(folder / "logs"), "--jobs", "1", "--readme", "none", *extra]


def test_the_committed_plan_reads_whole():
    plan = confirmatory.read_plan(PLAN)
    assert plan.n == 20 and plan.datasets == ("mnist",) and len(plan.claims) == 5
    runs = confirmatory.configurations(plan)
    assert len(runs) == 40 and {r.seed for r in runs if r.kind == "vae"} == set(range(120, 140))
    assert not confirmatory.evaluation(plan).likelihood  # no claim needs -log p(x)


def test_a_plan_not_committed_as_it_is_is_refused_before_any_run(tmp_path):
    plan = confirmatory.read_plan(tiny_plan(tmp_path))
    with pytest.raises(UserError, match="commit the plan as it is before any of its runs"):
        confirmatory.lock(plan, str(tmp_path / "ck"))
    assert not (tmp_path / "ck").exists()


def test_runs_not_descending_from_the_plans_commit_are_refused():
    plan_commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", PLAN], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip()
    if not plan_commit:
        pytest.skip("not a git checkout")
    parent = subprocess.run(["git", "rev-parse", f"{plan_commit}^"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    locked = {"commit": plan_commit}
    confirmatory.check_descent(locked, [{"checkpoint": "a.pt", "trained_commit": head, "trained_dirty": False}])
    with pytest.raises(UserError, match="does not descend from the plan's commit"):
        confirmatory.check_descent(locked, [{"checkpoint": "b.pt", "trained_commit": parent, "trained_dirty": False}])


def test_welch_interval_and_verdict_rule_on_hand_made_numbers():
    a, b = [1.0, 2.0, 3.0], [5.0, 6.0, 8.0, 9.0]
    mean, (low, high) = seed_statistics.welch_ci95(a, b)
    se = (stats.tstd(a) ** 2 / 3 + stats.tstd(b) ** 2 / 4) ** 0.5
    result = stats.ttest_ind(b, a, equal_var=False)
    assert mean == pytest.approx(5.0) and (high - low) / 2 == pytest.approx(stats.t.ppf(0.975, result.df) * se)
    assert seed_statistics.two_sample_verdict(a, b, 0.01, +1) == "holds"
    assert seed_statistics.two_sample_verdict(a, b, 0.01, -1) == "reversed"
    assert seed_statistics.two_sample_verdict(a, b, 0.2, +1) == "not shown"
    assert seed_statistics.two_sample_verdict([1.0], b, 0.0, +1) == "not shown"


@pytest.mark.slow
def test_a_quick_plan_runs_its_seeds_tests_its_claims_and_refuses_once_the_plan_changes(tmp_path):
    plan_path = tiny_plan(tmp_path)
    result = run_script("study.py", *quick_plan(tmp_path, plan_path))
    assert result.returncode == 0, result.stderr
    study = json.loads((tmp_path / "out" / "confirmatory" / "study.json").read_text())
    assert study["plan"]["sha256"] == confirmatory.read_plan(plan_path).sha256 and study["plan"]["n"] == 2
    assert study["plan"]["power_command"] == "python studies/power.py"
    assert sorted((r["model"], r["seed"]) for r in study["runs"]) == \
        [("autoencoder", 100), ("autoencoder", 101), ("vae", 120), ("vae", 121)]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert all(r["trained_commit"] == (head or None) for r in study["runs"])
    assert all("neg_elbo" not in r["metrics"] for r in study["runs"])  # the plan asks for no likelihood
    # every verdict recomputed with scipy from the runs' per-seed values
    rows = study["comparisons"]
    assert len(rows) == 5
    ps = []
    for row in rows:
        def values(model):
            return [r["samplers"][row["sampler"]][row["metric"]] if row["sampler"] else r["metrics"][row["metric"]]
                    for r in study["runs"] if r["model"] == model]
        a, b = values("autoencoder"), values("vae")
        assert row["values_autoencoder"] == a and row["values_vae"] == b
        p = stats.ttest_ind(b, a, equal_var=False).pvalue
        if len(set(a)) == len(set(b)) == 1:  # no spread at all (quick runs judge nothing confident): scipy's nan
            p = 1.0 if a[0] == b[0] else 0.0
        assert row["p"] == pytest.approx(p) and row["mean"] == pytest.approx(sum(b) / 2 - sum(a) / 2)
        ps.append(p)
    order = sorted(range(5), key=lambda i: ps[i])
    holm, running = [0.0] * 5, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (5 - rank) * ps[i]))
        holm[i] = running
    for row, adjusted in zip(rows, holm):
        direction = {"VAE > AE": 1, "VAE < AE": -1}[row["direction"]]
        expected = "not shown" if adjusted >= 0.05 else \
            ("holds" if (row["mean"] > 0) == (direction > 0) else "reversed")
        assert row["p_holm"] == pytest.approx(adjusted) and row["verdict"] == expected
        # nan (null in JSON) only where neither model's values spread at all
        assert row["mde80"] > 0 if row["mde80"] is not None else len(set(row["values_vae"] + row["values_autoencoder"])) == 1
    assert (tmp_path / "out" / "confirmatory" / "study.md").read_text().count("| MNIST |") == 5

    # the plan edited after its runs exist: the study refuses, naming the change
    plan_path.write_text(plan_path.read_text().replace("smallest_effect = 1.0", "smallest_effect = 2.0"))
    refused = run_script("study.py", *quick_plan(tmp_path, plan_path))
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert "changed after its first run was trained" in errors[0] and "smallest_effect = 2.0" in errors[0]


@pytest.mark.slow
def test_a_run_whose_loss_becomes_non_finite_is_kept_named_and_counted(tmp_path, monkeypatch):
    real = training.train_one

    def diverging(run, splits, device, resume=False):
        if run.kind == "vae" and run.seed == 121:
            raise training.LossNotFinite("vae: the training loss became nan in epoch 1")
        return real(run, splits, device, resume)
    monkeypatch.setattr(training, "train_one", diverging)
    result = run_script("study.py", *quick_plan(tmp_path, tiny_plan(tmp_path)))
    assert result.returncode == 0, result.stderr
    study = json.loads((tmp_path / "out" / "confirmatory" / "study.json").read_text())
    failed = [r for r in study["runs"] if r.get("failed")]
    assert [(r["model"], r["seed"]) for r in failed] == [("vae", 121)] and failed[0]["metrics"] == {}
    assert all(c["n_vae"] == 1 and c["n_autoencoder"] == 2 and c["verdict"] == "not shown"
               for c in study["comparisons"])
    assert "vae seed 121" in (tmp_path / "out" / "confirmatory" / "study.md").read_text()


def test_the_plans_recipe_is_what_the_study_trains_and_a_changed_default_is_refused():
    from lab import config, runner
    plan = confirmatory.read_plan(PLAN)
    study = config.StudyConfig(runs_folder="confirmatory/confirmatory")
    confirmatory.check_recipe([runner.train_config_of(r, study) for r in confirmatory.configurations(plan)])
    moved = config.replace(runner.train_config_of(confirmatory.configurations(plan)[0], study), epochs=30)
    with pytest.raises(UserError, match="the plan's values govern"):
        confirmatory.check_recipe([moved])


def test_a_folder_locked_by_a_quick_smoke_test_is_refused_for_the_real_study(tmp_path):
    plan = confirmatory.read_plan(PLAN)
    confirmatory.lock(confirmatory.read_plan(tiny_plan(tmp_path)), str(tmp_path), quick=True)  # no commit
    with pytest.raises(UserError, match="made by a --quick smoke test"):
        confirmatory.lock(plan, str(tmp_path))
    # the committed plan, never edited since it was added, locks a folder of its own
    if subprocess.run(["git", "log", "-1", "--", PLAN], cwd=ROOT, capture_output=True, text=True).stdout:
        locked = confirmatory.lock(plan, str(tmp_path / "real"))
        assert locked["path"] == "studies/confirmatory.toml" and locked["sha256"] == plan.sha256


def test_runs_trained_by_uncommitted_code_are_refused():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    with pytest.raises(UserError, match="uncommitted changes"):
        confirmatory.check_descent({"commit": head}, [{"checkpoint": "c.pt", "trained_commit": head,
                                                       "trained_dirty": True}])

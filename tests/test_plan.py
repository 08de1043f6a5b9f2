"""The confirmatory study's plan (studies/confirmatory.toml) and the power analysis behind its n."""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT
from lab import seed_statistics

sys.path.insert(0, os.path.join(ROOT, "studies"))
import power  # noqa: E402

PLAN = os.path.join(ROOT, "studies", "confirmatory.toml")


def test_welch_p_is_scipys_welch_test():
    a, b = [1.0, 2.0, 4.0, 3.5], [5.0, 5.1, 4.9, 5.3, 5.2]
    assert seed_statistics.welch_t_test_p(a, b) == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    assert seed_statistics.welch_t_test_p([1.0], b) == 1.0


def test_welch_power_agrees_with_a_simulation_of_the_test():
    # unequal spreads, as the pilot has them, at the plan's n: the formula and 40 000 simulated studies agree
    # to 0.01 (the simulation's own standard error is 0.002)
    for difference, sd_a, sd_b, n in ((1.0, 1.16, 0.10, 20), (0.05, 0.03, 0.033, 12), (46.0, 38.0, 8.5, 12),
                                      (0.075, 0.0676, 0.0068, 13)):
        formula = seed_statistics.welch_power(difference, sd_a, sd_b, n, n, 0.01)
        simulated = power.simulated_power(difference, sd_a, sd_b, n, 0.01, 40000, seed=1)
        assert formula == pytest.approx(simulated, abs=0.01)
    # at 6 seeds and a tenfold variance ratio the Welch-Satterthwaite approximation is off by about 0.012,
    # on the safe side: it promises less power than the test has
    formula = seed_statistics.welch_power(46.0, 38.0, 8.5, 6, 6, 0.01)
    assert formula < power.simulated_power(46.0, 38.0, 8.5, 6, 0.01, 40000, seed=1) < formula + 0.025
    assert seed_statistics.welch_power(0.0, 1.0, 1.0, 10, 10, 0.05) == pytest.approx(0.05, abs=1e-9)


def test_n_for_power_is_the_smallest_n_that_reaches_it():
    n = seed_statistics.n_for_power(1.0, 1.16, 0.10, 0.01)
    assert seed_statistics.welch_power(1.0, 1.16, 0.10, n, n, 0.01) >= 0.8
    assert seed_statistics.welch_power(1.0, 1.16, 0.10, n - 1, n - 1, 0.01) < 0.8
    # equal spreads and a large n: the normal approximation 2 (z_a/2 + z_b)^2 / d^2
    d = 0.5
    approx = 2 * (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 / d ** 2
    assert seed_statistics.n_for_power(d, 1.0, 1.0, 0.05) == pytest.approx(approx, abs=2)


def test_minimum_detectable_difference_is_where_power_reaches_80_percent():
    mdd = seed_statistics.minimum_detectable_difference(1.16, 0.10, 20, 20, 0.01)
    assert seed_statistics.welch_power(mdd, 1.16, 0.10, 20, 20, 0.01) == pytest.approx(0.8, abs=1e-6)
    assert 0.9 < mdd < 1.0  # the plan's n of 20 detects 1 nat, so the smallest detectable is a little below


def committed_seeds():
    """Every seed any committed result file names, but the plan's own results (readme/confirmatory/)."""
    seeds = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "seed" and isinstance(value, int):
                    seeds.add(value)
                elif key == "seeds" and isinstance(value, list):
                    seeds.update(v for v in value if isinstance(v, int))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    for path in glob.glob(os.path.join(ROOT, "readme", "**", "*.json"), recursive=True):
        if os.path.relpath(path, os.path.join(ROOT, "readme")).startswith("confirmatory" + os.sep):
            continue
        with open(path) as f:
            walk(json.load(f))
    return seeds


def test_the_plans_seeds_are_fresh_distinct_and_as_many_as_its_n():
    plan = power.read_plan(PLAN)
    per_model = [plan["study"][f"seeds_{kind}"] for kind in ("autoencoder", "vae")]
    assert all(len(seeds) >= plan["study"]["n"] for seeds in per_model)
    seeds = per_model[0] + per_model[1]  # the two models' seeds differ too: independent samples
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 100 and not set(seeds) & committed_seeds()
    assert committed_seeds() >= {0, 1, 2, 3, 4}  # the walk does find the committed seeds
    made = os.path.join(ROOT, "readme", "confirmatory", "study.json")
    if os.path.exists(made):  # the plan's own results: its seeds, each run once, none other
        with open(made) as f:
            runs = json.load(f)["runs"]
        assert sorted(r["seed"] for r in runs) == sorted(seeds)


def test_the_plans_n_is_at_least_what_the_power_analysis_asks_and_its_measures_exist():
    plan = power.read_plan(PLAN)
    values = power.pilot_values(plan)
    rows = power.required_n(plan, values)
    assert len(rows) == len(plan["claims"]) * len(plan["study"]["datasets"])
    assert all(len(v) == len(plan["statistics"]["pilot_seeds"]) for v in values.values())
    assert plan["study"]["n"] >= max(row["n"] for row in rows)
    assert power.planning_alpha(plan) == pytest.approx(0.05 / len(rows))
    for claim in plan["claims"]:
        assert claim["direction"] in (-1, 1) and claim["smallest_effect"] > 0 and claim["why"].strip()


def test_a_plan_with_too_small_an_n_is_seen_to_need_more():
    plan = power.read_plan(PLAN)
    plan["study"]["n"] = 10
    assert max(row["n"] for row in power.required_n(plan, power.pilot_values(plan))) > plan["study"]["n"]


@pytest.mark.slow
def test_power_script_exits_1_when_the_plans_n_is_too_small(tmp_path):
    text = open(PLAN).read().replace("n = 20 ", "n = 10 ")
    assert "n = 10 " in text
    small = tmp_path / "small.toml"
    small.write_text(text)
    shutil.copy(PLAN, tmp_path / "plan.toml")
    ok = subprocess.run([sys.executable, "studies/power.py", str(tmp_path / "plan.toml"), "--simulations", "2000"],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "n per model the plan needs: 20; the plan's n: 20 (20 autoencoder seeds, 20 vae seeds); runs: 40" in ok.stdout
    bad = subprocess.run([sys.executable, "studies/power.py", str(small), "--simulations", "2000"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: the plan's n (10)")


def test_simulated_tost_n_grows_as_the_margin_shrinks():
    wide = power.simulated_tost_n(2.0, 1.0, 1.0, 0.05, 0.8, 2000)
    narrow = power.simulated_tost_n(1.0, 1.0, 1.0, 0.05, 0.8, 2000)
    assert wide < narrow
    # the normal approximation for TOST at a true difference of 0: 2 (z_a + z_b/2)^2 / m^2 per group
    approx = 2 * (stats.norm.ppf(0.95) + stats.norm.ppf(0.9)) ** 2 / 1.0
    assert narrow == pytest.approx(approx, abs=3)
    assert np.isfinite(power.reference_mmd2(draws=2))

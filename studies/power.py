"""How many seeds does each claim of a confirmatory plan need? The power analysis behind its n.

    python studies/power.py                          # the plan studies/confirmatory.toml, ~6 s
    python studies/power.py studies/confirmatory.toml --simulations 20000

(Python 3.11 or later: it reads the plan with tomllib.) Reads the plan and its pilot (the exploratory runs it
names: readme/study.json, seeds 0-4) and prints, per
claim: each model's standard deviation over the pilot's seeds, the plan's smallest effect of interest, the n per
model at which the plan's test (two-sided Welch t) reaches the plan's power at that effect and at alpha / (number
of claims), Holm's strictest threshold, and a simulation of the test at that n that checks the formula. Then the
n the plan needs (the largest), the plan's n, and the alternatives the plan's reasons cite. Exits 1 when the
plan's n is below what its claims need.
"""
import argparse
import json
import math
import os
import statistics
import sys
import tomllib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lab import seed_statistics as stats  # noqa: E402

DEFAULT_PLAN = os.path.join("studies", "confirmatory.toml")


def read_plan(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def pilot_values(plan, root=ROOT):
    """{(dataset, model, metric, sampler): [value per pilot seed]} from the runs of the plan's pilot file."""
    with open(os.path.join(root, plan["statistics"]["pilot"])) as f:
        runs = json.load(f)["runs"]
    seeds = plan["statistics"]["pilot_seeds"]
    values = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        if run["seed"] not in seeds or run["dataset"] not in plan["study"]["datasets"]:
            continue
        for claim in plan["claims"]:
            sampler = claim.get("sampler")
            value = run["samplers"][sampler][claim["metric"]] if sampler else run["metrics"][claim["metric"]]
            values.setdefault((run["dataset"], run["model"], claim["metric"], sampler), []).append(value)
    return values


def planning_alpha(plan):
    """The level each test is planned at: alpha over the family's size (Holm's strictest threshold), so that
    every claim keeps its power whatever its rank among the family's p values."""
    family = len(plan["claims"]) * len(plan["study"]["datasets"])
    return plan["statistics"]["alpha"] / family


def required_n(plan, values):
    """One row per (dataset, claim): the pilot's standard deviations and the n per model the claim needs."""
    alpha, power = planning_alpha(plan), plan["statistics"]["power"]
    rows = []
    for dataset in plan["study"]["datasets"]:
        for claim in plan["claims"]:
            key = (claim["metric"], claim.get("sampler"))
            sd_a = statistics.stdev(values[(dataset, "autoencoder") + key])
            sd_b = statistics.stdev(values[(dataset, "vae") + key])
            n = stats.n_for_power(claim["smallest_effect"], sd_a, sd_b, alpha, power)
            rows.append({"dataset": dataset, "claim": claim["text"], "metric": claim["metric"],
                         "sampler": claim.get("sampler"), "sd_autoencoder": sd_a, "sd_vae": sd_b,
                         "smallest_effect": claim["smallest_effect"], "alpha": alpha, "n": n})
    return rows


def simulated_power(difference, sd_a, sd_b, n, alpha, simulations, seed=0):
    """The share of simulated studies (normal values, n per model) in which the Welch test rejects at alpha."""
    from scipy import stats as scipy_stats
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, sd_a, size=(simulations, n))
    b = rng.normal(difference, sd_b, size=(simulations, n))
    return float(np.mean(scipy_stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue < alpha))


def simulated_tost_n(margin, sd_a, sd_b, alpha, power, simulations, seed=0, most=200):
    """The smallest n per model at which two one-sided Welch tests against +-margin, at a true difference of 0,
    show equivalence with the given power (by simulation)."""
    from scipy import stats as scipy_stats
    rng = np.random.default_rng(seed)
    for n in range(3, most + 1):
        a = rng.normal(0.0, sd_a, size=(simulations, n))
        b = rng.normal(0.0, sd_b, size=(simulations, n))
        lower = scipy_stats.ttest_ind(b + margin, a, axis=1, equal_var=False, alternative="greater").pvalue
        upper = scipy_stats.ttest_ind(b - margin, a, axis=1, equal_var=False, alternative="less").pvalue
        if np.mean(np.maximum(lower, upper) < alpha) >= power:
            return n
    return None


def reference_mmd2(draws=20, size=2000, shift=0.5, seed=0):
    """The MMD² (this project's estimator) of N((shift, 0), I) against N(0, I), mean over draws: the reference
    the plan's smallest effect on mmd2_to_prior is taken from."""
    import torch
    from lab.measures import gaussian_mmd2
    generator = torch.Generator().manual_seed(seed)
    values = [gaussian_mmd2(torch.randn(size, 2, generator=generator) + torch.tensor([shift, 0.0]),
                            torch.randn(size, 2, generator=generator)) for _ in range(draws)]
    return sum(values) / draws


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plan", nargs="?", default=DEFAULT_PLAN, help="the plan (default: %(default)s)")
    parser.add_argument("--simulations", type=int, default=20000, help="simulated studies per check")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    plan = read_plan(args.plan)
    values = pilot_values(plan)
    rows = required_n(plan, values)
    alpha, power = planning_alpha(plan), plan["statistics"]["power"]
    print(f"plan {args.plan}; pilot {plan['statistics']['pilot']} seeds {plan['statistics']['pilot_seeds']}; "
          f"two-sided Welch t at alpha {plan['statistics']['alpha']} / {len(rows)} = {alpha:.4g}, power {power}")
    n_plan = plan["study"]["n"]
    print(f"{'dataset':8} {'claim':58} {'sd AE':>9} {'sd VAE':>9} {'effect':>7} {'n':>4} {'simulated':>9} "
          f"{'mdd at plan n':>13}")
    for row in rows:
        simulated = simulated_power(row["smallest_effect"], row["sd_autoencoder"], row["sd_vae"], row["n"],
                                    alpha, args.simulations)
        detectable = stats.minimum_detectable_difference(row["sd_autoencoder"], row["sd_vae"], n_plan, n_plan, alpha,
                                                         power) if n_plan >= 2 else math.nan
        print(f"{row['dataset']:8} {row['claim'][:58]:58} {row['sd_autoencoder']:9.4g} {row['sd_vae']:9.4g} "
              f"{row['smallest_effect']:7.4g} {row['n']:4d} {simulated:9.3f} {detectable:13.4g}")
    print("  (n: per model, for power >= {0} at the smallest effect; simulated: the power of {1} simulated studies "
          "at that n; mdd: the smallest difference the plan's n detects with power {0})".format(power, args.simulations))
    needed = max(row["n"] for row in rows)
    seeds = {kind: plan["study"][f"seeds_{kind}"] for kind in plan["study"]["models"]}
    print(f"n per model the plan needs: {needed}; the plan's n: {n_plan} "
          f"({', '.join(f'{len(s)} {kind} seeds' for kind, s in seeds.items())}); "
          f"runs: {sum(len(s) for s in seeds.values()) * len(plan['study']['datasets'])}")
    print("the reasons' references:")
    print(f"  MMD² of N((0.5, 0), I) against N(0, I), 2000 codes, mean of 20 draws: {reference_mmd2():.4f}")
    for dataset in plan["study"]["datasets"]:
        for metric, sampler in (("fid", "prior"), ("fid", "gmm")):
            sd_a = statistics.stdev(values[(dataset, "autoencoder", metric, sampler)])
            sd_b = statistics.stdev(values[(dataset, "vae", metric, sampler)])
            claim = next(c for c in plan["claims"] if (c["metric"], c.get("sampler")) == (metric, sampler))
            print(f"  {dataset} {metric} {sampler}: at half the plan's effect ({claim['smallest_effect'] / 2:.4g}) "
                  f"n = {stats.n_for_power(claim['smallest_effect'] / 2, sd_a, sd_b, alpha, power)}")
        sd_a = statistics.stdev(values[(dataset, "autoencoder", "fid", "gmm")])
        sd_b = statistics.stdev(values[(dataset, "vae", "fid", "gmm")])
        margin = math.sqrt((sd_a ** 2 + sd_b ** 2) / 2)
        print(f"  {dataset} fid gmm as an equivalence claim, margin one seed-to-seed spread ({margin:.4g}), "
              f"TOST at a true difference of 0: n = "
              f"{simulated_tost_n(margin, sd_a, sd_b, alpha, power, args.simulations // 4)}")
    if n_plan < needed or any(len(s) < n_plan for s in seeds.values()):
        print(f"error: the plan's n ({plan['study']['n']}) is below what its claims need ({needed})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

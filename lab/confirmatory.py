"""The confirmatory study: a plan written and committed before its runs (studies/confirmatory.toml), the lock that
keeps it fixed once a run exists, and its verdicts.

    python study.py --plan studies/confirmatory.toml     # trains the plan's runs, evaluates them, reports

Each claim is tested as the plan says: a two-sided Welch t test on each model's per-seed values of the claim's
primary measure (the two models have their own seeds, so the samples are independent), one Holm family over
every claim, and the plan's verdict rule (lab/seed_statistics.py: two_sample_verdict). No run is dropped.

The lock: before the first run is trained, the plan's SHA-256 and the commit that last changed it are written
to <checkpoint_dir>/confirmatory/<name>/plan.lock.json. Verdicts are refused (one error line) when the plan differs
from what was locked, or when a run was trained at a commit that does not descend from the plan's: a changed plan
is a new study with new seeds.
"""
import difflib
import json
import math
import os
import statistics
from dataclasses import dataclass

from lab import seed_statistics as stats
from lab.config import EvalConfig
from lab.files import UserError, file_sha256, strict_json, writable_dir, write_atomically
from lab.provenance import ROOT, added_commit_of, is_ancestor, last_commit_of
from lab.runner import RunConfig
from lab.seed_study import run_value

POWER_COMMAND = "python studies/power.py"
# the plan's recipe ([study] recipe), which governs should train.py's defaults ever change: every run is checked
# against it before the plan is locked
RECIPE = {"epochs": 20, "batch_size": 256, "lr": 3e-3, "schedule": "cosine", "hidden_dims": (256, 256, 256),
          "activation": "gelu", "latent_dim": 2, "iwae_k": 1, "max_grad_norm": 1e4, "precision": "fp32",
          "compile": False, "max_train_images": None, "image_size": None}
REQUIRED = {"study": ("name", "datasets", "models", "n", "device"), "statistics": ("test", "alpha", "correction"),
            "evaluation": ("num_samples", "exact_likelihood")}


@dataclass(frozen=True)
class Plan:
    """A confirmatory plan as read from its file (studies/confirmatory.toml has every field and why)."""
    path: str
    sha256: str
    text: str
    name: str
    datasets: tuple
    models: tuple
    n: int
    seeds: tuple  # ((model kind, (seed, ...)), ...)
    device: str
    alpha: float
    claims: tuple  # ({"text", "metric", "sampler", "direction", "smallest_effect", "why"}, ...)
    num_samples: int
    exact_likelihood: bool

    def seeds_of(self, kind):
        return dict(self.seeds)[kind]


def read_plan(path):
    """The plan in the TOML file at path; a UserError naming what is wrong with it."""
    try:
        import tomllib  # Python 3.11 and later; the rest of the project runs on 3.9
    except ImportError:
        raise UserError("--plan needs Python 3.11 or later (its tomllib reads the plan)") from None
    try:
        with open(path, "rb") as f:
            raw = f.read()
        plan = tomllib.loads(raw.decode())
    except OSError as e:
        raise UserError(f"--plan {path}: cannot read it ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--plan {path}: not a TOML file ({e})") from None
    for table, keys in REQUIRED.items():
        missing = [k for k in keys if k not in plan.get(table, {})]
        if missing:
            raise UserError(f"--plan {path}: [{table}] has no {', '.join(missing)}")
    study, statistics, evaluation = plan["study"], plan["statistics"], plan["evaluation"]
    if statistics["test"] != "welch" or statistics["correction"] != "holm":
        raise UserError(f"--plan {path}: this study tests by Welch's t with Holm's correction only")
    seeds = tuple((kind, tuple(study.get(f"seeds_{kind}", ()))) for kind in study["models"])
    for kind, listed in seeds:
        if len(set(listed)) < study["n"]:
            raise UserError(f"--plan {path}: {study['n']} runs per model, but seeds_{kind} lists {len(set(listed))} seeds")
    claims = tuple({"text": c["text"], "metric": c["metric"], "sampler": c.get("sampler"),
                    "direction": c["direction"], "smallest_effect": c.get("smallest_effect"), "why": c.get("why", "")}
                   for c in plan.get("claims", []))
    if not claims:
        raise UserError(f"--plan {path}: no [[claims]]")
    return Plan(path=path, sha256=file_sha256(path), text=raw.decode(), name=study["name"],
                datasets=tuple(study["datasets"]), models=tuple(study["models"]), n=study["n"], seeds=seeds,
                device=study["device"], alpha=statistics["alpha"], claims=claims,
                num_samples=evaluation["num_samples"], exact_likelihood=evaluation["exact_likelihood"])


def configurations(plan):
    """The plan's runs: the first n seeds of each model's list, on each dataset."""
    return [RunConfig(dataset, kind, seed) for dataset in plan.datasets for kind in plan.models
            for seed in plan.seeds_of(kind)[:plan.n]]


def evaluation(plan):
    """How the plan's runs are evaluated: the study's measures, without -log p(x) when no claim needs it."""
    return EvalConfig(num_samples=plan.num_samples, likelihood=plan.exact_likelihood,
                      quadrature=plan.exact_likelihood, iwae_draws=20)


# ---- the lock ----

def lock_path(plan, checkpoint_dir):
    return os.path.join(checkpoint_dir, "confirmatory", plan.name, "plan.lock.json")


def check_recipe(train_configs):
    """Every run of the plan trains the plan's recipe (RECIPE), whatever train.py's defaults are today."""
    for run in train_configs:
        differs = {k: getattr(run, k) for k, v in RECIPE.items() if getattr(run, k) != v}
        if run.kind == "vae" and run.beta != 1.0:
            differs["beta"] = run.beta
        if differs:
            raise UserError(f"the plan's recipe is not what this code trains: {differs} (the plan's values govern)")


def lock(plan, checkpoint_dir, quick=False):
    """Before any run is trained: the plan must be committed as it is, and never edited since it was added
    (quick: the smoke test's plan may be any file); the first call writes the lock, later ones check the plan
    against it. Returns the lock's contents."""
    path = lock_path(plan, checkpoint_dir)
    if os.path.exists(path):
        locked = read_lock(path)
        if not quick and not locked.get("commit"):
            raise UserError(f"{path}: this folder's runs were made by a --quick smoke test of the plan; give the "
                            f"confirmatory study a --checkpoint_dir of its own")
        check_unchanged(plan, locked)
        return locked
    commit, dirty = last_commit_of(plan.path)
    if not quick and (commit is None or dirty):
        raise UserError(f"--plan {plan.path}: commit the plan as it is before any of its runs "
                        f"({'it has uncommitted changes' if dirty else 'it is not in git'})")
    if not quick and added_commit_of(plan.path) != commit:
        raise UserError(f"--plan {plan.path} was edited after the commit that added it ({commit[:12]}): a changed "
                        f"plan is a new study; add it as a new file, with new seeds")
    locked = {"path": os.path.relpath(os.path.abspath(plan.path), ROOT), "sha256": plan.sha256, "commit": commit,
              "text": plan.text}
    writable_dir(os.path.dirname(path))
    write_atomically(path, strict_json(locked))
    return locked


def read_lock(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: the plan's lock cannot be read ({e}); it is not rewritten, as runs exist") from None


def check_unchanged(plan, locked):
    """A UserError naming the first changed line when the plan differs from the locked one."""
    if plan.sha256 == locked["sha256"]:
        return
    diff = [line for line in difflib.unified_diff(locked.get("text", "").splitlines(), plan.text.splitlines(),
                                                  lineterm="", n=0) if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    change = "; ".join(diff[:2]) if diff else "its bytes"
    raise UserError(f"--plan {plan.path} changed after its first run was trained (SHA-256 {locked['sha256'][:12]} -> "
                    f"{plan.sha256[:12]}: {change}); a changed plan is a new study with new seeds")


def check_descent(locked, runs):
    """Every run must have been trained at the plan's commit or a later one, by committed code (quick plans have
    no commit)."""
    if not locked.get("commit"):
        return
    for run in runs:
        trained = run.get("trained_commit")
        if run.get("trained_dirty") is not False:
            raise UserError(f"{run['checkpoint']}: trained by code with uncommitted changes (or of unknown state) at "
                            f"commit {trained}; its verdicts would not be confirmatory")
        if not trained or not is_ancestor(locked["commit"], trained):
            raise UserError(f"{run['checkpoint']}: trained at commit {trained}, which does not descend from the plan's "
                            f"commit {locked['commit'][:12]}; its verdicts would not be confirmatory")


# ---- the verdicts ----

def values_of(runs, dataset, kind, metric, sampler):
    """{seed: value} of one model's finite values of a measure (a run that could not take it is left out)."""
    found = {}
    for run in runs:
        if (run["dataset"], run["model"]) != (dataset, kind):
            continue
        value = run_value(run, metric, sampler)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[run["seed"]] = value
    return found


def compare(runs, plan):
    """One comparison per (dataset, claim): mean = VAE - AutoEncoder, its Welch 95 % interval, p, Holm's p over
    the whole family, the smallest difference the realised n detects with power 0.8 at the family's strictest
    level (mde80) and the verdict, with every seed's value."""
    rows = []
    for dataset in plan.datasets:
        for claim in plan.claims:
            a = values_of(runs, dataset, "autoencoder", claim["metric"], claim["sampler"])
            b = values_of(runs, dataset, "vae", claim["metric"], claim["sampler"])
            mean, ci = stats.welch_ci95(list(a.values()), list(b.values()))
            rows.append({"dataset": dataset, "claim": claim["text"], "metric": claim["metric"],
                         "sampler": claim["sampler"], "primary": True,
                         "direction": {1: "VAE > AE", -1: "VAE < AE"}[claim["direction"]], "test": "welch",
                         "n_autoencoder": len(a), "n_vae": len(b), "mean": mean, "ci95": list(ci),
                         "smallest_effect": claim["smallest_effect"],
                         "p": stats.welch_t_test_p(list(a.values()), list(b.values())),
                         "seeds_autoencoder": list(a), "values_autoencoder": list(a.values()),
                         "seeds_vae": list(b), "values_vae": list(b.values())})
    family = len(rows)
    for row, adjusted in zip(rows, stats.holm([r["p"] for r in rows])):
        a, b = row["values_autoencoder"], row["values_vae"]
        claim = next(c for c in plan.claims if c["text"] == row["claim"])
        row["p_holm"] = adjusted
        row["mde80_alpha"] = plan.alpha / family
        row["mde80"] = stats.minimum_detectable_difference(statistics.stdev(a), statistics.stdev(b),
                                                           len(a), len(b), plan.alpha / family) \
            if len(a) > 1 and len(b) > 1 else math.nan
        row["verdict"] = stats.two_sample_verdict(a, b, adjusted, claim["direction"], plan.alpha)
    return rows


def plan_entry(plan, locked):
    return {"path": locked["path"], "sha256": locked["sha256"], "commit": locked["commit"], "n": plan.n,
            "power_command": POWER_COMMAND}

"""Markdown tables and README blocks, drawn from the result dicts alone (evaluate.py's report, study.json,
beta_sweep.json): a report never computes a number, so rerunning it never retrains or re-evaluates."""
import math
import os
import re

from lab.cli import dataset_prefix
from lab.files import write_atomically
from lab.sample_measures import SAMPLE_MEASURES
from lab.names import MODEL_KINDS, SAMPLERS

TITLES = {"autoencoder": "AutoEncoder", "vae": "VAE", "prior": "N(0, I)", "gaussian": "fitted Gaussian",
          "gmm": "fitted 10-Gaussian mixture", "mnist": "MNIST", "binarized-mnist": "binarised MNIST",
          "fashion-mnist": "Fashion-MNIST"}
MEASURE_TITLES = {
    "mmd2_to_prior": "MMD² of test codes to N(0, I)", "fid": "Fréchet distance (judge features)",
    "precision": "precision (k = 5)", "density": "density (k = 5)", "coverage": "coverage (k = 5)",
    "confident": "judged confident (≥ 0.9)",
    "class_entropy_bits": "class entropy, bits", "grid_confident": "[−1.5, 1.5]² grid judged confident",
    "own_grid_confident": "grid over its own codes judged confident",
    "recon": "reconstruction cross-entropy at the posterior mean, nats",
    "recon_sampled_z": "reconstruction cross-entropy at one sampled z, nats", "ink_f1": "ink F1 of reconstructions",
}


# ---- evaluate.py's single-run report ----

ROWS = [  # (key, label, format): the order of the Markdown table
    ("objective", "training objective (AE: cross-entropy; VAE: recon + β·KL or its IWAE bound), nats", "{:.2f}"),
    ("recon", "reconstruction cross-entropy at the code (VAE: posterior mean), nats", "{:.2f}"),
    ("recon_sampled_z", "  the VAE's at one sampled z (its ELBO's distortion), nats", "{:.2f}"),
    ("rate", "  the VAE's KL to the prior (its ELBO's rate), nats", "{:.2f}"),
    ("neg_elbo", "−ELBO (recon + KL), nats", "{:.2f}"),
    ("iwae_nll", "IWAE estimate of −log p(x), nats", "{:.2f}"),
    ("iwae_ess", "  its effective sample size, mean draws per image (few: a loose bound)", "{:.1f}"),
    ("iwae_low_ess_share", "  share of images whose effective sample size is under 5 % of k", "{:.1%}"),
    ("nll", "−log p(x) by quadrature over the latent plane, nats", "{:.2f}"),
    ("quadrature_step_error_nats", "  its largest per-image change at the last halving of the step, nats", "{:.4f}"),
    ("quadrature_refined_images", "  images summed on a grid finer than 0.02", "{:.0f}"),
    ("quadrature_missed_mass_images", "  images whose quadrature lies over 10 nats above their IWAE estimate (missed mass)",
     "{:.0f}"),
    ("pixel_acc_0.5", "pixel accuracy, threshold 0.5", "{:.2%}"),
    ("pixel_acc_0.6", "pixel accuracy, threshold 0.6", "{:.2%}"),
    ("ink_f1", "ink F1 (pixels > 0.5)", "{:.3f}"),
    ("ink_iou", "ink IoU (pixels > 0.5)", "{:.3f}"),
    ("knn5_accuracy", "5-NN class accuracy from the codes", "{:.2%}"),
    ("code_mean_norm", "‖mean of test codes‖ (0 for N(0, I))", "{:.2f}"),
    ("code_cov_distance_to_identity", "‖covariance of test codes − I‖", "{:.2f}"),
    ("mmd2_to_prior", "MMD² between test codes and N(0, I)", "{:.4f}"),
    ("prior_samples_confident", "N(0, I) samples judged confident (≥ 0.9)", "{:.1%}"),
    ("prior_samples_class_entropy_bits", "  entropy of their classes, bits (max 3.32)", "{:.2f}"),
    ("grid_confident", "[−1.5, 1.5]² grid images judged confident", "{:.1%}"),
    ("fitted_gaussian_samples_confident", "samples of a Gaussian fitted to training codes, confident", "{:.1%}"),
    ("fitted_gaussian_samples_class_entropy_bits", "  entropy of their classes, bits", "{:.2f}"),
]


def markdown_table(results, baseline, iwae_k, dataset="mnist", split="test"):
    names = list(results)
    titles = {"auto": "AutoEncoder", "vae": "VAE"}
    short = [n[len(dataset_prefix(dataset)):] if n.startswith(dataset_prefix(dataset)) else n for n in names]
    lines = [f"| {'validation' if split == 'val' else 'test'} set | " + " | ".join(titles.get(n, n) for n in short) + " | all-black image |", "|---" * (len(names) + 2) + "|"]
    for key, label, fmt in ROWS:
        lookup = f"iwae_nll_k{iwae_k}" if key == "iwae_nll" else key
        if key == "iwae_nll":
            label = f"IWAE estimate of −log p(x), k = {iwae_k}, nats"
        cells = [fmt.format(results[n][lookup]) if results[n].get(lookup) is not None else "–" for n in names]
        if not any(c != "–" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + (fmt.format(baseline[key]) if key in baseline else "–") + " |")
    return "\n".join(lines) + "\n"


def seed_summary_table(summary, iwae_k):
    """One recipe's runs over seeds (seed_statistics.across_seeds): mean, 95 % t interval and every seed's value."""
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"| {' / '.join(summary['runs'])}: one recipe, seeds {seeds} | mean | 95 % interval (t) | each seed |",
             "|---|---|---|---|"]
    for key, label, fmt in ROWS:
        lookup = f"iwae_nll_k{iwae_k}" if key == "iwae_nll" else key
        if key == "iwae_nll":
            label = f"IWAE estimate of −log p(x), k = {iwae_k}, nats"
        if lookup in summary["measures"]:
            m = summary["measures"][lookup]
            low, high = m["ci95"]
            # drawn inside what the measure can be (the JSON keeps the t interval as computed): a share in [0, 1],
            # a count or a sample size not below 0
            if key in SHARES or "%" in fmt:
                low, high = max(0.0, low), min(1.0, high)
            elif key in COUNTS:
                low = max(0.0, low)
            lines.append(f"| {label.strip()} | {fmt.format(m['mean'])} | [{fmt.format(low)}, {fmt.format(high)}] | "
                         + ", ".join(fmt.format(v) for v in m["values"]) + " |")
    return "\n".join(lines) + "\n"


COUNTS = ("iwae_ess", "quadrature_refined_images", "quadrature_missed_mass_images")


# ---- the study (study.json) ----

def number(value, metric):
    if metric in ("precision", "density", "coverage", "confident", "grid_confident", "own_grid_confident", "ink_f1"):
        return f"{value:.3f}"
    if metric == "mmd2_to_prior":
        return f"{value:.4f}"
    return f"{value:.2f}"


# measures that are shares, in [0, 1]: a t interval over a few seeds can reach past the range, and is drawn inside it
SHARES = ("precision", "coverage", "confident", "grid_confident", "own_grid_confident", "ink_f1", "ink_iou",
          "pixel_acc_0.5", "pixel_acc_0.6", "knn5_accuracy")


def interval(ci, metric, difference=False):
    """The interval as a report prints it: a share's drawn inside [0, 1] (a mean's only: a difference of shares
    lies in [-1, 1], where no t interval here reaches); the stored interval is the t interval itself."""
    if ci is None or any(c is None or c != c for c in ci):  # null or nan: a single seed
        return "–"
    low, high = ci
    if metric in SHARES and not difference:
        low, high = max(0.0, low), min(1.0, high)
    return f"[{number(low, metric)}, {number(high, metric)}]"


def detectable(comparison):
    """The comparison's mde80 as a report prints it ('–' where there is none: a secondary measure, one seed)."""
    mde = comparison.get("mde80")
    return "–" if mde is None or mde != mde else ("∞" if mde == math.inf else number(mde, comparison["metric"]))


def p_value(p):
    return "–" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def claims_table(comparisons):
    """One row per claim and measure: the primary measure first, with its Holm-adjusted p and the verdict;
    the secondary measures after it, in italics, without verdict. Every seed's difference in the last column."""
    lines = ["| data | claim | measure | AutoEncoder | VAE | VAE − AE (95 % CI) | p (Holm) | verdict | "
             "detectable (power 0.8) | per seed |", "|---" * 10 + "|"]
    previous = None
    for c in comparisons:
        claim = c["claim"] if (c["dataset"], c["claim"]) != previous else "〃"
        previous = (c["dataset"], c["claim"])
        measure = MEASURE_TITLES[c["metric"]] + (f", {TITLES[c['sampler']]} samples" if c["sampler"] else "")
        diff = f"{number(c['mean'], c['metric'])} {interval(c['ci95'], c['metric'], difference=True)}"
        if c.get("margin") is not None:
            diff += f"; 90 % CI {interval(c['ci90'], c['metric'], difference=True)} vs ±{c['margin']:g}"
        if c["primary"]:
            verdict = "not shown" if c["verdict"] == "not shown" else f"**{c['verdict']}**"
            if c.get("margin") is not None and c["verdict"] == "not shown":
                verdict += " (interval too wide to tell)"
        else:
            measure, verdict = f"*{measure}* (secondary)", "–"
        seeds = " ".join(number(d, c["metric"]) for d in c["differences"])
        lines.append(f"| {TITLES.get(c['dataset'], c['dataset'])} | {claim} | {measure} | "
                     f"{number(c['autoencoder_mean'], c['metric'])} | {number(c['vae_mean'], c['metric'])} | "
                     f"{diff} | {p_value(c['p_holm'])} | {verdict} | {detectable(c)} | {seeds} |")
    return "\n".join(lines) + "\n"


def samplers_table(summary, floors):
    """Mean [95 % CI] of each sample measure, per dataset, model and sampler."""
    index = {(s["dataset"], s["model"], s["sampler"], s["metric"]): s for s in summary}
    lines = ["| data | model | sampler | " + " | ".join(MEASURE_TITLES[m].split(" (")[0] for m in SAMPLE_MEASURES) + " |",
             "|---" * (3 + len(SAMPLE_MEASURES)) + "|"]
    for dataset in floors:
        for model in MODEL_KINDS:
            for sampler in SAMPLERS:
                cells = []
                for m in SAMPLE_MEASURES:
                    s = index.get((dataset, model, sampler, m))
                    cells.append("–" if s is None else f"{number(s['mean'], m)} {interval(s['ci95'], m)}")
                lines.append(f"| {TITLES.get(dataset, dataset)} | {TITLES[model]} | {TITLES[sampler]} | " + " | ".join(cells) + " |")
        floor = floors[dataset]
        lines.append(f"| {TITLES.get(dataset, dataset)} | training images (the floor) | – | " + " | ".join(
            number(floor[m], m) if m in floor else "–" for m in SAMPLE_MEASURES) + " |")
    return "\n".join(lines) + "\n"


# ---- the β sweep (beta_sweep.json) ----

SWEEP_TABLE = [("rate_nats", "rate (KL), nats"), ("distortion_nats", "distortion, nats"),
               ("neg_elbo_nats", "−ELBO, nats"), ("iwae_nll", "IWAE bound, nats"),
               ("nll_nats", "−log p(x) by quadrature, nats"),
               ("active_dims", "active dims"), ("mmd2_to_prior", "MMD² to N(0, I)"), ("fid", "prior-sample FID"),
               ("density", "density"), ("coverage", "coverage"), ("confident", "confident")]


def sweep_table(summary):
    index = {(s["beta"], s["metric"]): s for s in summary}
    betas = sorted({s["beta"] for s in summary}, key=lambda b: (b is not None, b if b is not None else 0))
    lines = ["| model | " + " | ".join(title for _, title in SWEEP_TABLE) + " |", "|---" * (1 + len(SWEEP_TABLE)) + "|"]
    for beta in betas:
        cells = []
        for metric, _ in SWEEP_TABLE:
            s = index.get((beta, metric))
            cells.append("–" if s is None else f"{number(s['mean'], metric)} {interval(s['ci95'], metric)}")
        name = "AutoEncoder" if beta is None else f"VAE, β = {beta:g}"
        lines.append(f"| {'**' + name + '**' if beta == 1 else name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---- README blocks ----

def replace_readme_block(readme_path, block, name="study"):
    with open(readme_path) as f:
        text = f.read()
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        print(f"{readme_path}: no <!-- {name}:begin --> ... <!-- {name}:end --> block; left alone")
        return
    write_atomically(readme_path, pattern.sub(lambda m: m.group(1) + block + m.group(2), text))


def committed_in(path):
    """The short hash of the last commit that changed path ('' outside a git checkout or if never committed)."""
    import subprocess
    folder, name = os.path.split(os.path.abspath(path))
    try:
        result = subprocess.run(["git", "log", "-1", "--format=%h", "--", name], cwd=folder, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def commit_of(provenance):
    p = provenance
    return (p.get("commit") or "no git checkout")[:10] + (" with uncommitted changes" if p.get("dirty") else "")


def machine_of(provenance):
    p = provenance
    return (f"{p.get('gpu') or p.get('cpu') or 'unknown CPU'} ({p.get('threads')} threads, {p.get('jobs')} jobs; "
            f"torch {p.get('torch')}, Python {p.get('python')})")


def provenance_line(provenance):
    """One line: which commit, libraries and machine made a result, and in how long."""
    wall = provenance.get("wall_seconds")
    took = "" if wall is None else f" in {wall / 60:.1f} min of wall time"
    return (f"made at commit {commit_of(provenance)} by `{provenance.get('command')}` on "
            f"{machine_of(provenance)}{took}")


def runs_line(provenance):
    """Where a study's or sweep's runs were made: its provenance is the last invocation that trained or evaluated
    any of them (a rerun that finds everything cached keeps the provenance it finds: study.py's made_by), and its
    wall time the sum over every such invocation (runner.wall_seconds_of), including ones whose evaluations a
    later version redid."""
    wall = provenance.get("wall_seconds")
    took = "" if wall is None else f"; {wall / 60:.1f} min of wall time over every invocation that trained or evaluated them"
    return (f"runs trained and evaluated by `{provenance.get('command')}`, last at commit {commit_of(provenance)} on "
            f"{machine_of(provenance)}{took}")


def verdict_cell(c):
    """The verdict, the mean difference and the interval it was read off: the 95 % one, or for an equivalence
    claim the 90 % one against its margin (unadjusted, as the verdict's 'not equivalent' is)."""
    shown = "**" + c["verdict"] + "**" if c["verdict"] != "not shown" else "not shown"
    if c.get("margin") is not None and c.get("ci90"):
        return (f"{shown} ({number(c['mean'], c['metric'])}; 90 % CI "
                f"{interval(c['ci90'], c['metric'], difference=True)} vs ±{c['margin']:g})")
    return f"{shown} ({number(c['mean'], c['metric'])} {interval(c['ci95'], c['metric'], difference=True)})"


def trained_line(result):
    """Which commits trained a result's runs (each run records its own), as a phrase."""
    commits = sorted({(r.get("trained_commit") or "unknown")[:10] for r in result["runs"]})
    return f"every run trained at commit {commits[0]}" if len(commits) == 1 else \
        f"runs trained at commits {', '.join(commits)}"


def headline(study, json_path, confirmatory=None, confirmatory_path=None):
    """The README's headline: each claim's verdict on its primary measure, from the confirmatory study's JSON
    (confirmatory: its contents, on fresh seeds under a committed plan) where one exists, beside the
    exploratory study's per dataset (study.json), one row per claim; a confirmatory claim in another form than
    the exploratory claim of its measure has a row of its own."""
    datasets = study["datasets"]
    confirmed = {(c["dataset"], c["metric"], c["sampler"]): c for c in (confirmatory or {}).get("comparisons", [])}
    confirmed_datasets = list(dict.fromkeys(d for d, _, _ in confirmed))
    titles = [f"{TITLES.get(d, d)}, confirmatory" for d in confirmed_datasets] + \
        [f"{TITLES.get(d, d)}{', exploratory' if confirmed else ''}" for d in datasets]
    lines = ["| claim | primary measure | " + " | ".join(titles) + " |", "|---" * (2 + len(titles)) + "|"]
    primaries = [c for c in study["comparisons"] if c["primary"]]
    claims = list(dict.fromkeys(c["claim"] for c in primaries))
    # a confirmatory claim in another form than the exploratory one of its measure (a superiority form for an
    # equivalence claim) gets a row of its own, right after that one: never a cell under the other claim
    other_form = {}
    for c in confirmed.values():
        if c["claim"] not in claims:
            twin = next((e["claim"] for e in primaries if (e["metric"], e["sampler"]) == (c["metric"], c["sampler"])),
                        None)
            other_form.setdefault(twin, []).append(c)
    for claim in claims:
        rows = {c["dataset"]: c for c in primaries if c["claim"] == claim}
        first = next(iter(rows.values()))
        measure = MEASURE_TITLES[first["metric"]].split(" (")[0] + \
            (f", {TITLES[first['sampler']]} samples" if first["sampler"] else "")
        cells = []
        for dataset in confirmed_datasets:
            c = confirmed.get((dataset, first["metric"], first["sampler"]))
            cells.append("–" if c is None or c["claim"] != claim else verdict_cell(c))
        cells += ["–" if rows.get(d) is None else verdict_cell(rows[d]) for d in datasets]
        lines.append(f"| {claim} | {measure} | " + " | ".join(cells) + " |")
        for c in other_form.get(claim, []):
            cells = [verdict_cell(c) if d == c["dataset"] else "–" for d in confirmed_datasets] + ["–"] * len(datasets)
            lines.append(f"| {c['claim']} (confirmatory form) | {measure} | " + " | ".join(cells) + " |")
    notes = []
    if confirmatory:
        plan = confirmatory["plan"]
        n = " and ".join(f"{len(v)} {TITLES.get(k, k)}" for k, v in confirmatory["seeds"].items())
        notes.append(f"*Confirmatory: generated from `{os.path.relpath(confirmatory_path)}`, fresh seeds ({n} runs) "
                     f"under the plan `{plan['path']}` committed at {(plan['commit'] or '')[:10]} before any of its "
                     f"runs; two-sided Welch t per claim, one Holm family over its claims; "
                     + trained_line(confirmatory) + "; the report " + provenance_line(confirmatory["provenance"])
                     + ".*")
    n = len(study["seeds"])
    notes.append(f"*Exploratory (its claims, measures and tests were chosen with these runs' numbers known). "
                 f"Generated from `{os.path.relpath(json_path)}`: {n} seeds, "
                 + runs_line(study["provenance"]) + ". Paired VAE − AutoEncoder over seeds, t test, "
                 "Holm-corrected across the dataset's claims; the fitted-mixture claim by two one-sided tests against "
                 "its margin.*")
    return ("\n".join(lines) + "\n\nCells: the verdict on the claim's primary measure, then the mean difference "
            "VAE − AutoEncoder and its 95 % interval (for the equivalence claim its 90 % interval against the "
            "margin).\n\n" + "\n\n".join(notes) + "\n")


def confirmatory_table(comparisons):
    """The confirmatory study's verdicts, one row per (dataset, claim), as study.json holds them."""
    lines = ["| data | claim | primary measure | n (AE, VAE) | VAE − AE (95 % Welch CI) | p | p (Holm) | "
             "smallest effect | detectable (power 0.8) | verdict |", "|---" * 10 + "|"]
    for c in comparisons:
        measure = MEASURE_TITLES[c["metric"]] + (f", {TITLES[c['sampler']]} samples" if c["sampler"] else "")
        shown = "**" + c["verdict"] + "**" if c["verdict"] != "not shown" else "not shown"
        lines.append(f"| {TITLES.get(c['dataset'], c['dataset'])} | {c['claim']} | {measure} | "
                     f"{c['n_autoencoder']}, {c['n_vae']} | {number(c['mean'], c['metric'])} "
                     f"{interval(c['ci95'], c['metric'], difference=True)} | {p_value(c['p'])} | "
                     f"{p_value(c['p_holm'])} | {number(c['smallest_effect'], c['metric'])} | {detectable(c)} | "
                     f"{shown} |")
    return "\n".join(lines) + "\n"

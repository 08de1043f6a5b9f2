"""The ladder from Davidson et al.'s Gaussian 2-D VAE protocol to our best recipe (docs/binarized-mnist.md): one
change per rung, each rung's exact -log p(x) on validation images. A table and a figure, from the validation
reports evaluate.py wrote (nothing is recomputed here):

    python -m lab.ladder        # readme/best/ladder/rung<N>.json -> readme/best/ladder/ladder.md and ladder.png
    python -m lab.ladder --gap  # their protocol here against its candidate explanations, on the test set -> gap.md

The rungs' order was written in docs/binarized-mnist.md before any of their runs.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lab.files import write_atomically  # noqa: E402
from lab.reports import provenance_line  # noqa: E402
from lab.seed_statistics import holm, over_seeds, welch_ci95, welch_t_test_p  # noqa: E402

FOLDER = "readme/best/ladder"  # one evaluation per rung, rung<N>.json (docs/binarized-mnist.md has the commands)
# (rung, what it changes, the report column of its seed 0: the rung is that checkpoint's recipe over its seeds)
RUNGS = [
    (1, "Davidson et al.'s protocol: 784-256-128-2, ReLU, Adam 1e-3, batch 64, early stopping (patience 50, "
        "at most 200 epochs)", "binarized-mnist_published-protocol"),
    (2, "our network: 784-256-256-256-2", "binarized-mnist_net256x3-relu_seed0"),
    (3, "our activation: GELU", "binarized-mnist_net256x3-gelu_seed0"),
    (4, "our optimisation: batch 256, Adam 3e-3, cosine schedule over 20 epochs, no early stopping "
        "(the default recipe)", "checkpoints_binarized-mnist_vae"),
    (5, "70 epochs instead of 20", "binarized-mnist_default-70epochs_seed0"),
    (6, "the 5-sample importance-weighted bound instead of the ELBO (our best recipe)", "binarized-mnist_vae_best"),
]
MEASURES = {"nll": "−log p(x), certified quadrature", "iwae_nll_k500": "IS, 500 samples", "neg_elbo": "−ELBO"}


def rung_summaries(reports):
    """Per rung: its runs' values of each measure over seeds, the largest quadrature step error and the images
    whose quadrature missed mass, and which report and runs they come from."""
    rungs = []
    for number, change, seed0 in RUNGS:
        report, group = next(((r, g) for r in reports for g in r["across_seeds"] if seed0 in g["runs"]), (None, None))
        if group is None:
            fail(f"no report groups {seed0} with its other seeds; run the commands in docs/binarized-mnist.md first")
        models = [report["models"][name] for name in group["runs"]]
        if any(model.get("nll") is None for model in models):
            fail(f"rung {number}: a report has no quadrature -log p(x) for {seed0}'s recipe (evaluate with --quadrature)")
        rungs.append({"rung": number, "change": change, "runs": group["runs"], "seeds": group["seeds"],
                      "commit": (report["provenance"].get("commit") or "no git")[:7],
                      **{m: over_seeds(measured(models, m, seed0)) for m in MEASURES},
                      "step_error": max(model["quadrature_step_error_nats"] for model in models),
                      "missed_mass": sum(model["quadrature_missed_mass_images"] for model in models)})
    return rungs


# Their protocol in this code scores 3.3 nats below their published number by their estimator (IS, 500 samples, on
# the test set). Each candidate undoes differences between their code and ours, and is scored the same way.
PROTOCOL = ("readme/best/published-protocol.json", "binarized-mnist_published-protocol")
CANDIDATES = [
    ("their code's Gaussian VAE: σ the softplus of the encoder's output (`--posterior_scale softplus`), "
     "Glorot-uniform weights and zero biases, no output bias at the mean image (`--init tensorflow`)",
     os.path.join(FOLDER, "gap-tensorflow.json"), "binarized-mnist_protocol-tf_seed0"),
    ("σ the softplus of the encoder's output alone (`--posterior_scale softplus`; our initialisation)",
     os.path.join(FOLDER, "gap-softplus.json"), "binarized-mnist_protocol-softplus_seed0"),
]
# a candidate split in two (planned in docs/binarized-mnist.md before the runs): (what the difference is, the arm
# with both changes, the arm with one), each by its seed-0 column
SPLITS = [("the initialisation (`--init tensorflow`), σ's softplus in both",
           "binarized-mnist_protocol-tf_seed0", "binarized-mnist_protocol-softplus_seed0")]
PUBLISHED = {"iwae_nll_k500": "135.73 ± 0.83", "neg_elbo": "137.08", "nll": "–"}  # Davidson et al. 2018, Table 1
GAP_MEASURES = {"iwae_nll_k500": "IS, 500 samples", "neg_elbo": "−ELBO", "nll": "−log p(x), certified quadrature"}
# their estimator, and the exact value it estimates (where both reports have it)
COMPARED = {"iwae_nll_k500": "IS-500", "nll": "exact −log p(x)"}


def recipe_values(report, seed0, path):
    """{measure: over_seeds(...)} of the recipe whose seed-0 column is seed0, with its runs' names and seeds."""
    group = next((g for g in report["across_seeds"] if seed0 in g["runs"]), None)
    if group is None:
        fail(f"{path}: no recipe with {seed0} among its runs; run the commands in docs/binarized-mnist.md first")
    if report.get("split") != "test":
        fail(f"{path}: scored on the {report.get('split')} split; their number is the test set's (evaluate.py without --split val)")
    models = [report["models"][name] for name in group["runs"]]
    return {"seeds": group["seeds"], "images": sorted({m.get("bound_images") for m in models}, key=str),
            **{m: over_seeds(measured(models, m, seed0)) for m in GAP_MEASURES if m != "nll"},
            # the exact value only where the report has it for every seed (evaluate.py --quadrature)
            "nll": over_seeds([m["nll"] for m in models]) if all(m.get("nll") is not None for m in models) else None}


def measured(models, measure, seed0):
    """Each run's value of measure; an error line when a report does not hold it (e.g. IS with other than 500
    samples: evaluate.py --iwae_draws 500)."""
    if any(model.get(measure) is None for model in models):
        fail(f"{seed0}'s report has no {measure} for every seed; make it by the commands in docs/binarized-mnist.md")
    return [model[measure] for model in models]


def gap_table(protocol, candidates):
    """Their published numbers, their protocol here, and each candidate with its change from the protocol here,
    by their estimator and by the exact value where both reports have it (Welch's 95 % interval and p; no
    family: each candidate answers its own question)."""
    head = " | ".join(f"{label}: mean [95 % t interval]" for label in GAP_MEASURES.values())
    changes = " | ".join(f"{label} change (candidate − protocol), nats: Welch 95 % interval (p)"
                         for label in COMPARED.values())
    lines = [f"| binarised MNIST test set, 2-D Gaussian VAE | seeds | {head} | {changes} |",
             "|---|---|" + "---|" * (len(GAP_MEASURES) + len(COMPARED)),
             "| Davidson et al. 2018, published (± their spread over runs) | – | "
             + " | ".join(PUBLISHED[m] for m in GAP_MEASURES) + " |" + " – |" * len(COMPARED)]

    def cells(values):
        return " | ".join("–" if values[m] is None else f"{number(values[m]['mean'])} [{number(values[m]['ci95'][0])}, "
                          f"{number(values[m]['ci95'][1])}]" for m in GAP_MEASURES)

    lines.append(f"| their protocol, in this code | {len(protocol['seeds'])} | {cells(protocol)} |"
                 + " – |" * len(COMPARED))
    for what, values in candidates:
        lines.append(f"| … with {what} | {len(values['seeds'])} | {cells(values)} | "
                     + " | ".join(welch_cell(protocol[m], values[m]) for m in COMPARED) + " |")
    return "\n".join(lines)


def welch_cell(before, after):
    """after's mean less before's, with Welch's 95 % interval and p; "–" where either has no values."""
    if before is None or after is None:
        return "–"
    difference, (low, high) = welch_ci95(before["values"], after["values"])
    return f"{difference:+.2f} [{low:+.2f}, {high:+.2f}] (p = {welch_t_test_p(before['values'], after['values']):.2g})"


def split_table(arms, splits):
    """Each planned split: the arm with both changes less the arm with one, by their estimator and the exact
    value (Welch, as the gap table); arms: {seed-0 column: recipe_values}. Splits whose arms are absent are left out."""
    lines = [f"| {what} | " + " | ".join(welch_cell(arms[one][m], arms[both][m]) for m in COMPARED) + " |"
             for what, both, one in splits if both in arms and one in arms]
    if not lines:
        return ""
    head = " | ".join(f"{label} change, nats: Welch 95 % interval (p)" for label in COMPARED.values())
    return f"| split: what differs between two candidates | {head} |\n|---|" + "---|" * len(COMPARED) + "\n" + "\n".join(lines)


def gap(protocol_path=PROTOCOL[0], candidates=None, output_dir=FOLDER, splits=None):
    if candidates is None:
        candidates = [(change, path, seed0) for change, path, seed0 in CANDIDATES]
        splits = SPLITS if splits is None else splits
    protocol_report = read_report(protocol_path)
    protocol = recipe_values(protocol_report, PROTOCOL[1], protocol_path)
    rows, made = [], [f"`{os.path.basename(protocol_path)}`: {provenance_line(protocol_report['provenance'])}"]
    by_column = {}
    for change, path, seed0 in candidates:
        report = read_report(path)
        rows.append((change, recipe_values(report, seed0, path)))
        by_column[seed0] = rows[-1][1]
        made.append(f"`{os.path.basename(path)}`: {provenance_line(report['provenance'])}")
    table = gap_table(protocol, rows)
    split = split_table(by_column, splits or [])
    table += f"\n\n{split}" if split else ""
    images = sorted({n for values in [protocol] + [v for _, v in rows] for n in values["images"]}, key=str)
    scored_on = "the " + " / ".join(f"{n:,}".replace(",", " ") for n in images)
    write_atomically(os.path.join(output_dir, "gap.md"),
                     f"Their protocol here against its candidate explanations, on {scored_on} test images, by "
                     f"`python -m lab.ladder --gap` from {'; '.join(made)}.\n\n{table}\n")
    print(table)
    return protocol, rows


def read_report(path):
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: cannot read it ({e}); run the commands in docs/binarized-mnist.md first")
    if not isinstance(report, dict) or not all(k in report for k in ("models", "across_seeds", "provenance")):
        fail(f"{path}: not a report of evaluate.py over several seeds (no models, across_seeds or provenance)")
    return report


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def number(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def ladder_table(rungs):
    """The rungs, and each one's change from the rung above: Welch's interval and p, and Holm's p over the steps
    (an exploratory family: the steps were planned, no threshold was)."""
    lines = ["| rung | change (each rung keeps the ones above) | seeds | −log p(x), nats: mean [95 % t interval] | "
             "change from the rung above, nats: Welch 95 % interval (p; Holm p over the 5 steps) | IS-500 | −ELBO | "
             "step error ≤ | missed-mass images |", "|---|---|---|---|---|---|---|---|---|"]
    pairs = [(previous["nll"]["values"], rung["nll"]["values"]) for previous, rung in zip(rungs, rungs[1:])]
    p_values = [welch_t_test_p(a, b) for a, b in pairs]
    adjusted = holm(p_values)
    for i, rung in enumerate(rungs):
        nll = rung["nll"]
        if i == 0:
            step = "–"
        else:
            difference, (low, high) = welch_ci95(*pairs[i - 1])  # this rung's mean minus the one above's
            step = f"{difference:+.2f} [{low:+.2f}, {high:+.2f}] (p = {p_values[i - 1]:.2g}; {adjusted[i - 1]:.2g})"
        lines.append(f"| {rung['rung']} | {rung['change']} | {len(rung['seeds'])} | {number(nll['mean'])} "
                     f"[{number(nll['ci95'][0])}, {number(nll['ci95'][1])}] | {step} | "
                     f"{number(rung['iwae_nll_k500']['mean'])} | {number(rung['neg_elbo']['mean'])} | "
                     f"{number(rung['step_error'], 4)} | {rung['missed_mass']} |")
    return "\n".join(lines)


def ladder_figure(rungs):
    fig, ax = plt.subplots(figsize=(7.5, 3.4), dpi=100)
    for offset, measure, colour in ((-0.12, "iwae_nll_k500", "tab:gray"), (0.0, "neg_elbo", "tab:blue"),
                                    (0.12, "nll", "tab:red")):
        for i, rung in enumerate(rungs):
            s = rung[measure]
            ax.errorbar(i + offset, s["mean"], yerr=[[s["mean"] - s["ci95"][0]], [s["ci95"][1] - s["mean"]]],
                        fmt="o", color=colour, capsize=3, markersize=4, label=MEASURES[measure] if i == 0 else None)
            ax.plot([i + offset + 0.05] * len(s["values"]), s["values"], ".", color=colour, alpha=0.35, markersize=3)
    ax.set_xticks(range(len(rungs)), [f"{r['rung']}" for r in rungs])
    ax.set_xlabel("rung (1: Davidson et al.'s protocol … 6: our best recipe)")
    ax.set_ylabel("nats per validation image")
    ax.set_title("binarised MNIST, 2-D Gaussian VAE: one change per rung (mean, 95 % t interval, seeds)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def main(reports=None, output_dir=FOLDER):
    reports = reports or [os.path.join(FOLDER, f"rung{rung}.json") for rung, _, _ in RUNGS]
    loaded = [read_report(path) for path in reports]
    rungs = rung_summaries(loaded)
    images = sorted({m.get("bound_images") for r in loaded for m in r["models"].values()}, key=str)
    scored_on = (f"the first {images[0]:,} validation images".replace(",", " ") if len(images) == 1
                 else f"validation images ({', '.join(map(str, images))} per report)")
    made = "; ".join(f"`{os.path.basename(p)}`: {provenance_line(r['provenance'])}" for p, r in zip(reports, loaded))
    table = ladder_table(rungs)
    write_atomically(os.path.join(output_dir, "ladder.md"),
                     f"The ladder on {scored_on}, by `python -m lab.ladder` from {made}.\n\n{table}\n")
    fig = ladder_figure(rungs)
    fig.savefig(os.path.join(output_dir, "ladder.png"))
    plt.close(fig)
    print(table)
    return rungs


def cli(argv):
    if argv not in ([], ["--gap"]):
        fail(f"unknown arguments {' '.join(argv)}: python -m lab.ladder [--gap]")
    return gap() if argv == ["--gap"] else main()


if __name__ == "__main__":
    cli(sys.argv[1:])

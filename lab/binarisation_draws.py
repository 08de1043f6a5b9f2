"""How far the gap's IS-500 moves with the test set's binarisation (docs/binarized-mnist.md, "The gap").

Both sides binarise the test images by one random draw: ours once, with a fixed seed (data.load_dataset), and
the authors' TensorFlow example afresh (nicola-decao/s-vae-tf, examples/mnist.py: a pixel is 1 where its grey
level exceeds a uniform draw, the same Bernoulli sample). So their number and ours were taken on different 0/1
images of the same kind. For each model of their protocol run here, and of its candidate with their code's model,
this scores IS-500 again, by the same estimator and settings as its report, on a few more binarisations of the
same 10 000 test images, and says how far each arm's mean over seeds moves:

    python -m lab.binarisation_draws   # the reports' checkpoints -> readme/best/ladder/binarisation-draws.{json,md}

Exploratory: looked at after the gap was seen.
"""
import os
import shlex
import sys

import data
import models
from lab import measures
from lab.ladder import CANDIDATES, FOLDER, PROTOCOL, fail, number, read_report
from lab.reports import provenance_line
from lab.seed_statistics import over_seeds
from lab.their_estimator import checkpoints_of, gap_script

K = 500  # their table's importance samples, as in the reports
COMMITTED = data.BINARIZE_SEED + 1  # the seed that binarised the test images every report was scored on
FRESH = (COMMITTED + 1, COMMITTED + 2, COMMITTED + 3)  # three more draws of the same images
COMMAND = "python -m lab.binarisation_draws"
# their protocol here and their code's model: the two arms the gap's words compare
ARMS = [("their protocol, in this code", PROTOCOL[0]), ("their code's Gaussian VAE", CANDIDATES[0][1])]


def model_row(path, entry, grey_images, report_path):
    """One model's IS-500 on each fresh binarisation beside its report's (the committed one), with the report's
    sample seed, draws and images, so that only the 0/1 pixels differ. The model's reconstruction of the committed
    images must give the report's: else the checkpoint is not the one the report scored."""
    if not all(key in entry for key in (f"iwae_nll_k{K}", "bound_images", "recon")):
        fail(f"{report_path}: no iwae_nll_k{K}, bound_images or recon for {path} (evaluate.py --iwae_draws {K})")
    model = models.load_checkpoint(path)
    recon = measures.reconstruction_nats(model, data.binarize(grey_images, COMMITTED))
    if abs(recon - entry["recon"]) > 1e-3:
        fail(f"{path}: reconstructs the test images in {recon:.4f} nats, its report {entry['recon']:.4f}: "
             f"not the checkpoint {report_path} scored")
    n = entry["bound_images"]
    fresh = {str(seed): measures.iwae_nll_of_split(model, data.binarize(grey_images, seed)[:n], k=K)
             for seed in FRESH}
    shifts = [value - entry[f"iwae_nll_k{K}"] for value in fresh.values()]
    return {"checkpoint": path, "images": n, "committed": entry[f"iwae_nll_k{K}"], "fresh": fresh,
            "shift_mean": sum(shifts) / len(shifts), "shift_range": [min(shifts), max(shifts)]}


def arm(change, report_path, grey_images):
    report = read_report(report_path)
    if {"--sample_seed", "--seed"} & set(shlex.split(report["provenance"]["command"])):
        fail(f"{report_path}: made with another sample seed than 0; its draws cannot be repeated here")
    rows = [model_row(path, report["models"][key], grey_images, report_path)
            for key, path in checkpoints_of(report, report_path).items()]
    # the arm's mean over seeds as the reports give it, on each binarisation: how far a reader's number moves
    means = {str(seed): over_seeds([r["fresh"][str(seed)] for r in rows])["mean"] for seed in FRESH}
    committed = over_seeds([r["committed"] for r in rows])["mean"]
    return {"change": change, "report": report_path, "report_made": provenance_line(report["provenance"]),
            "models": rows, "committed_mean": committed, "fresh_means": means,
            "mean_shift": over_seeds([m - committed for m in means.values()])}


def table(arms):
    lines = ["| IS-500 on the test set, nats: the arm's mean over its seeds | seeds | committed binarisation (seed "
             f"{COMMITTED}) | " + " | ".join(f"seed {s}" for s in FRESH)
             + " | the mean's shift from the committed draw: mean [95 % t interval over the fresh draws] "
               "| largest \\|shift\\| of one model |",
             "|---|---|---|" + "---|" * len(FRESH) + "---|---|"]
    for a in arms:
        shift = a["mean_shift"]
        largest = max(abs(x) for r in a["models"] for x in r["shift_range"])
        lines.append(f"| {a['change']} | {len(a['models'])} | {number(a['committed_mean'])} | "
                     + " | ".join(number(a["fresh_means"][str(s)]) for s in FRESH)
                     + f" | {shift['mean']:+.3f} [{shift['ci95'][0]:+.3f}, {shift['ci95'][1]:+.3f}] | {largest:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=(), output_dir=FOLDER, data_dir="data"):
    def compute():
        grey = data.load_dataset("mnist", data_dir)["test"].images  # the grey levels binarized-mnist draws from
        return {"k": K, "sample_seed": 0, "committed_seed": COMMITTED, "fresh_seeds": list(FRESH),
                "arms": [arm(change, path, grey) for change, path in ARMS]}

    def describe(result):
        made = "; ".join(f"`{os.path.basename(a['report'])}`: {a['report_made']}" for a in result["arms"])
        return (f"The gap's IS-500 on more binarisations of the same test images, by `{COMMAND}`: "
                f"{provenance_line(result['provenance'])}, beside the reports' own values ({made}). Same estimator, "
                f"draws (sample seed 0) and images as the reports; only the 0/1 pixels differ. "
                f"Exploratory.\n\n{table(result['arms'])}")
    return gap_script(argv, __doc__, COMMAND, output_dir, "binarisation-draws", ARMS, compute, describe)


if __name__ == "__main__":
    main(sys.argv[1:])

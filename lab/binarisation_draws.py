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
import sys
import time

import data
import models
from lab import measures
from lab.files import strict_json, write_atomically
from lab.ladder import FOLDER, fail, number, read_report
from lab.provenance import provenance
from lab.reports import provenance_line
from lab.seed_statistics import over_seeds
from lab.their_estimator import ARMS as ESTIMATOR_ARMS, checkpoints_of

K = 500  # their table's importance samples, as in the reports
COMMITTED = data.BINARIZE_SEED + 1  # the seed that binarised the test images every report was scored on
FRESH = (COMMITTED + 1, COMMITTED + 2, COMMITTED + 3)  # three more draws of the same images
COMMAND = "python -m lab.binarisation_draws"
ARMS = ESTIMATOR_ARMS[:2]  # their protocol here and their code's model: the two arms the gap's words compare


def model_row(path, entry, grey_images):
    """One model's IS-500 on each fresh binarisation beside its report's (the committed one); the report's
    sample seed and images, so that only the 0/1 pixels differ."""
    model = models.load_checkpoint(path)
    n = entry["bound_images"]
    fresh = {str(seed): measures.iwae_nll_of_split(model, data.binarize(grey_images, seed)[:n], k=K)
             for seed in FRESH}
    shifts = [value - entry[f"iwae_nll_k{K}"] for value in fresh.values()]
    return {"checkpoint": path, "images": n, "committed": entry[f"iwae_nll_k{K}"], "fresh": fresh,
            "shift_mean": sum(shifts) / len(shifts), "shift_range": [min(shifts), max(shifts)]}


def arm(change, report_path, grey_images):
    report = read_report(report_path)
    rows = [model_row(path, report["models"][key], grey_images)
            for key, path in checkpoints_of(report, report_path).items()]
    # the arm's mean over seeds as the reports give it, on each binarisation: how far a reader's number moves
    means = {str(seed): sum(r["fresh"][str(seed)] for r in rows) / len(rows) for seed in FRESH}
    committed = sum(r["committed"] for r in rows) / len(rows)
    return {"change": change, "report": report_path, "models": rows, "committed_mean": committed,
            "fresh_means": means, "mean_shift": over_seeds([m - committed for m in means.values()])}


def table(arms):
    lines = ["| 3 seeds each, test set, IS-500, nats | committed binarisation (seed "
             f"{COMMITTED}) | " + " | ".join(f"seed {s}" for s in FRESH)
             + " | the mean's shift from the committed draw: mean [95 % t interval over the fresh draws] "
               "| largest shift of one model |",
             "|---|---|" + "---|" * len(FRESH) + "---|---|"]
    for a in arms:
        shift = a["mean_shift"]
        largest = max((abs(x) for r in a["models"] for x in r["shift_range"]), default=0.0)
        lines.append(f"| {a['change']} | {number(a['committed_mean'])} | "
                     + " | ".join(number(a["fresh_means"][str(s)]) for s in FRESH)
                     + f" | {shift['mean']:+.3f} [{shift['ci95'][0]:+.3f}, {shift['ci95'][1]:+.3f}] | {largest:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=(), output_dir=FOLDER, data_dir="data"):
    if list(argv) in (["-h"], ["--help"]):
        print(__doc__.strip())
        return None
    if list(argv):
        fail(f"unknown arguments {' '.join(argv)}: {COMMAND} takes none")
    started = time.perf_counter()
    grey = data.load_dataset("mnist", data_dir)["test"].images  # the grey levels binarized-mnist draws from
    arms = [arm(change, path, grey) for change, path in ARMS]
    result = {"provenance": provenance(COMMAND, round(time.perf_counter() - started, 1), 1), "k": K,
              "committed_seed": COMMITTED, "fresh_seeds": list(FRESH), "arms": arms}
    write_atomically(os.path.join(output_dir, "binarisation-draws.json"), strict_json(result))
    text = (f"The gap's IS-500 on more binarisations of the same test images, by `{COMMAND}`: "
            f"{provenance_line(result['provenance'])}. Each arm's mean over its 3 seeds; the committed column is "
            f"the reports' own value. Exploratory.\n\n{table(arms)}")
    write_atomically(os.path.join(output_dir, "binarisation-draws.md"), text)
    print(text)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

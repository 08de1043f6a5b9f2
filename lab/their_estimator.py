"""Davidson et al.'s published Gaussian 2-D VAE number set beside the estimator of their TensorFlow example
(docs/binarized-mnist.md, "The gap"). For each model of their protocol run here, and of its candidate with
their code's model, the example's importance-sampled "-log p(x)" (measures.single_decode_is_nll: p(x|z) at one
draw only, 500 draws for the rest) beside our IS-500 and -ELBO from the same model's report, on its images:

    python -m lab.their_estimator   # the reports' checkpoints -> readme/best/ladder/their-estimator.{json,md}

Exploratory: the estimator was looked for after the gap was seen.
"""
import os
import sys
import time

import data
import models
from lab import measures
from lab.files import strict_json, write_atomically
from lab.ladder import CANDIDATES, FOLDER, PROTOCOL, fail, number, read_report
from lab.provenance import provenance
from lab.reports import provenance_line
from lab.seed_statistics import over_seeds

K = 500  # their table's importance samples
COMMAND = "python -m lab.their_estimator"
ARMS = [("their protocol, in this code", PROTOCOL[0])] + [(change, path) for change, path, _ in CANDIDATES]
MEASURES = {"their_estimator": "their TensorFlow example's estimator, 500 draws",
            "iwae_nll_k500": "IS, 500 samples (every draw decoded)", "neg_elbo": "−ELBO"}


def checkpoints_of(report, path):
    """{model key: checkpoint} of an evaluate.py report, from the command that made it (one .pt per model)."""
    paths = [word for word in report["provenance"]["command"].split() if word.endswith(".pt")]
    if len(paths) != len(report["models"]):
        fail(f"{path}: its command does not name one checkpoint per model")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        fail(f"{', '.join(missing)}: not here (docs/binarized-mnist.md has the commands that make them)")
    return dict(zip(report["models"], paths))


def arm(change, report_path, test_images):
    report = read_report(report_path)
    rows = []
    for key, path in checkpoints_of(report, report_path).items():
        entry = report["models"][key]
        images = test_images[:entry["bound_images"]]  # the images the report's bounds were taken on
        rows.append({"checkpoint": path, "images": len(images), "iwae_nll_k500": entry["iwae_nll_k500"],
                     "neg_elbo": entry["neg_elbo"],
                     "their_estimator": measures.single_decode_is_nll(models.load_checkpoint(path), images, k=K)})
    return {"change": change, "report": report_path, "models": rows,
            **{m: over_seeds([r[m] for r in rows]) for m in MEASURES}}


def table(arms):
    header = "| | seeds | " + " | ".join(MEASURES.values()) + " |\n|---|---|" + "---|" * len(MEASURES) + "\n"
    published = "| Davidson et al. 2018, published (their −log-likelihood ± spread; −ELBO) | – | 135.73 ± 0.83 | | 137.08 |\n"
    rows = "".join(f"| {a['change']} | {a['their_estimator']['n']} | " + " | ".join(
        f"{number(a[m]['mean'])} [{number(a[m]['ci95'][0])}, {number(a[m]['ci95'][1])}]" for m in MEASURES) + " |\n"
        for a in arms)
    return header + published + rows


def main(argv=(), output_dir=FOLDER, data_dir="data"):
    if list(argv):
        fail(f"unknown arguments {' '.join(argv)}: {COMMAND} takes none")
    started = time.perf_counter()
    test_images = data.load_dataset("binarized-mnist", data_dir)["test"].images
    arms = [arm(change, path, test_images) for change, path in ARMS]
    result = {"provenance": provenance(COMMAND, round(time.perf_counter() - started, 1), 1),
              "k": K, "published": {"neg_log_likelihood": "135.73 ± 0.83", "neg_elbo": 137.08}, "arms": arms}
    write_atomically(os.path.join(output_dir, "their-estimator.json"), strict_json(result))
    text = (f"Davidson et al.'s published number beside their TensorFlow example's estimator, on the test images "
            f"of each model's report, by `{COMMAND}`: {provenance_line(result['provenance'])}. Means over seeds "
            f"with 95 % t intervals; IS-500 and −ELBO from the reports. Exploratory.\n\n{table(arms)}")
    write_atomically(os.path.join(output_dir, "their-estimator.md"), text)
    print(text)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

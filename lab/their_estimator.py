"""Davidson et al.'s published Gaussian 2-D VAE number set beside the estimator of their TensorFlow example
(docs/binarized-mnist.md, "The gap"). For each model of their protocol run here, and of each candidate
explanation (lab.ladder.CANDIDATES), the example's importance-sampled "-log p(x)" (measures.single_decode_is_nll: p(x|z) at one
draw only, 500 draws for the rest) beside our IS-500 and -ELBO from the same model's report, on its images:

    python -m lab.their_estimator   # the reports' checkpoints -> readme/best/ladder/their-estimator.{json,md}

Exploratory: the estimator was looked for after the gap was seen.
"""
import os
import shlex
import sys
import time

import data
import models
from lab import measures
from lab.files import DataError, strict_json, write_atomically
from lab.ladder import CANDIDATES, FOLDER, PROTOCOL, PUBLISHED as PUBLISHED_VALUES, fail, number, read_report
from lab.provenance import provenance
from lab.reports import provenance_line
from lab.seed_statistics import over_seeds

K = 500  # their table's importance samples
EXAMPLE_K = 100  # the draws their example calls it with
COMMAND = "python -m lab.their_estimator"
ARMS = [("their protocol, in this code", PROTOCOL[0])] + [(change, path) for change, path, _ in CANDIDATES]
MEASURES = {"their_estimator": "their TensorFlow example's estimator, 500 draws",
            "their_estimator_k100": "the same, 100 draws",
            "iwae_nll_k500": "IS, 500 samples (every draw decoded)", "neg_elbo": "−ELBO",
            "neg_elbo_minus_their_estimator": "−ELBO less the example's estimator (500 draws), per seed"}
PUBLISHED = ("Published (Davidson et al. 2018, Table 1, Gaussian VAE, d = 2; importance sampling with 500 samples, "
             "± their spread over runs): −log-likelihood 135.73 ± 0.83, −ELBO 137.08, so 1.35 nats between them.")


def checkpoints_of(report, path):
    """{model key: checkpoint} of an evaluate.py report, from the command that made it (one .pt per model)."""
    if (report.get("dataset"), report.get("split")) != ("binarized-mnist", "test"):
        fail(f"{path}: not a report on the binarised MNIST test set")
    paths = [word for word in shlex.split(report["provenance"]["command"]) if word.endswith(".pt")]
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
        model = models.load_checkpoint(path)
        row = {"checkpoint": path, "images": len(images), "iwae_nll_k500": entry["iwae_nll_k500"],
               "neg_elbo": entry["neg_elbo"], "their_estimator": measures.single_decode_is_nll(model, images, k=K),
               "their_estimator_k100": measures.single_decode_is_nll(model, images, k=EXAMPLE_K)}
        rows.append(row | {"neg_elbo_minus_their_estimator": row["neg_elbo"] - row["their_estimator"]})
    return {"change": change, "report": report_path, "models": rows,
            **{m: over_seeds([r[m] for r in rows]) for m in MEASURES}}


def table(arms):
    header = "| | seeds | " + " | ".join(MEASURES.values()) + " |\n|---|---|" + "---|" * len(MEASURES) + "\n"
    rows = "".join(f"| {a['change']} | {a['their_estimator']['n']} | " + " | ".join(
        f"{number(a[m]['mean'])} [{number(a[m]['ci95'][0])}, {number(a[m]['ci95'][1])}]" for m in MEASURES) + " |\n"
        for a in arms)
    return header + rows


def gap_script(argv, doc, command, output_dir, name, arms, compute, describe):
    """What the gap's scripts that rescore its checkpoints share (this one, lab.binarisation_draws): no arguments
    but -h; compute() -> the result's fields, given provenance and written to <name>.json; describe(result) -> the
    Markdown of <name>.md; arms: its (change, report) pairs. A checkpoint or data file that cannot be used is
    one error line, and a missing checkpoint is found before any is scored."""
    if list(argv) in (["-h"], ["--help"]):
        print(doc.strip())
        return None
    if list(argv):
        fail(f"unknown arguments {' '.join(argv)}: {command} takes none")
    for _, report_path in arms:  # every checkpoint here before any is scored: a missing one fails at once
        checkpoints_of(read_report(report_path), report_path)
    started = time.perf_counter()
    try:
        fields = compute()
    except (models.CheckpointError, DataError) as e:
        fail(str(e))
    result = {"provenance": provenance(command, round(time.perf_counter() - started, 1), 1), **fields}
    write_atomically(os.path.join(output_dir, f"{name}.json"), strict_json(result))
    text = describe(result)
    write_atomically(os.path.join(output_dir, f"{name}.md"), text)
    print(text)
    return result


def main(argv=(), output_dir=FOLDER, data_dir="data"):
    def compute():
        test_images = data.load_dataset("binarized-mnist", data_dir)["test"].images
        return {"k": K, "published": PUBLISHED_VALUES, "arms": [arm(change, path, test_images) for change, path in ARMS]}

    def describe(result):
        return (f"Davidson et al.'s published number beside their TensorFlow example's estimator, on the test images "
                f"of each model's report, by `{COMMAND}`: {provenance_line(result['provenance'])}. Means over seeds "
                f"with 95 % t intervals; IS-500 and −ELBO from the reports. Exploratory.\n\n{PUBLISHED}\n\n"
                f"{table(result['arms'])}")
    return gap_script(argv, __doc__, COMMAND, output_dir, "their-estimator", ARMS, compute, describe)


if __name__ == "__main__":
    main(sys.argv[1:])

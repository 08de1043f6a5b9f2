"""Measure what the figures only show: one table of numbers for every checkpoint.

    python evaluate.py --train_classifier     # once: the digit classifier that judges samples
    python evaluate.py                        # the MNIST checkpoints/*.pt -> readme/metrics.{json,md}
    python evaluate.py --dataset fashion-mnist   # -> readme/metrics_fashion-mnist.{json,md}

All numbers are on the 10 000 test images (losses in nats per image). Each measure is one function in
lab/measures.py, lab/judge.py or lab/sample_measures.py; lab/evaluation.py lists which this report holds.
"""
import os
import sys
import time

import data
import models
from lab import cli, config, judge as judges, measures, reports, training
from lab.config import EvalConfig, TrainConfig
from lab.evaluation import evaluate_model
from lab.files import UserError, strict_json, write_atomically, writable_dir
from lab.provenance import provenance
from lab.run_log import add_to_tensorboard_run
from lab.seed_statistics import across_seeds

JUDGE_PATH_HELP = judges.JUDGE_PATH.replace("{dataset}", "<dataset>")


def parse_args(argv=None):
    p = cli.ArgumentParser(
        prog="evaluate.py",
        description="Compute every measure of docs/models.md for each checkpoint on the 10 000 test images and write "
                    "<output_dir>/metrics.json and metrics.md. Generated images are judged by a small CNN digit "
                    f"classifier ({JUDGE_PATH_HELP}); --train_classifier (re)trains it first.")
    cli.add_checkpoints_argument(p)
    config.add_flags(p, TrainConfig, ["checkpoint_dir", "data_dir"], helps={
        "checkpoint_dir": "where to find checkpoints (default: %(default)s)"})
    p.add_argument("-o", "--output_dir", default="readme", help="where metrics.json and metrics.md go (default: %(default)s)")
    p.add_argument("--report_name", default=None, metavar="NAME",
                   help="write <output_dir>/NAME.json and NAME.md (default: metrics, metrics_<dataset> for other "
                        "datasets than mnist, with _val for --split val)")
    config.add_flags(p, TrainConfig, ["dataset"], helps={
        "dataset": "evaluate the checkpoints of --checkpoint_dir trained on this dataset (stored in each file); "
                   "results go to metrics.json/.md for mnist, metrics_<dataset>.json/.md otherwise; "
                   "binarized-mnist is judged by the mnist classifier. For your own images, " + cli.DATASET_HELP +
                   "; their sample measures need a judge, which --train_classifier trains from their labels "
                   "(default: %(default)s)"})
    p.add_argument("--classifier", default=None,
                   help=f"the judge's checkpoint (default: {JUDGE_PATH_HELP})")
    p.add_argument("--train_classifier", action="store_true",
                   help="train the judge (3 epochs of MNIST, about a minute on a CPU; as many steps on a smaller dataset) and save it to --classifier first")
    config.add_flags(p, EvalConfig, ["split"])
    config.add_flags(p, EvalConfig, ["iwae_draws", "iwae_images", "quadrature", "num_samples", "grid_range",
                                     "grid_size", "sample_seed"])
    cli.add_device_arguments(p)
    args = p.parse_args(argv)
    for old, new in config.deprecated_spellings(argv if argv is not None else sys.argv[1:], EvalConfig):
        print(f"note: {old} is deprecated; its name is now {new}", file=sys.stderr)
    return args


def the_judge(classifier, splits, built_in, device):
    """The judge of the generated images (None for a user's images without one) and the measures left out, with
    why: {what: reason}."""
    skipped = {}
    if built_in or os.path.exists(classifier):
        judge = judges.load_judge(classifier, map_location=device)
        judged_shape = tuple(judge.model_args.get("image_shape", models.IMAGE_SHAPE))
        if judged_shape != tuple(splits["test"].images.shape[1:]) or \
                (splits["test"].labels >= 0).all() and judge.model_args["num_classes"] <= int(splits["test"].labels.max()):
            raise UserError(f"{classifier}: a judge of other images ({' x '.join(map(str, judged_shape))}, "
                            f"{judge.model_args['num_classes']} classes); retrain it with --train_classifier")
    else:  # a user's images without a judge: the measures that need one are left out, and the report says why
        judge = None
        skipped["judged samples (confident share, class entropy, grid)"] = (
            f"no judge at {classifier}: " + ("train one with --train_classifier" if (splits["train"].labels >= 0).all()
                                                  else "the images have no labels to train one from"))
    if (splits["test"].labels < 0).any():
        skipped["5-NN class accuracy"] = "the images have no labels"
    return judge, skipped


def checked_images(args, loaded, device):
    """The splits of the images the checkpoints were trained on, every model's shape and images checked (and the
    labels --train_classifier needs) before anything is written."""
    if len({str((m.data_source or {}).get("image_size")) for m in loaded.values()}) > 1:
        raise UserError("the checkpoints given were trained at different --image_size; evaluate one size at a time")
    for model in loaded.values():
        data.dataset_of_model(model, args.dataset)
    splits = data.load_dataset_of(next(iter(loaded.values())), args.data_dir, device, args.dataset)
    if args.train_classifier and (splits["train"].labels < 0).any():
        raise UserError("--train_classifier: the judge learns from labelled images and these have no labels "
                        "(give one sub-folder per class, or `labels` in the .npz)")
    if args.train_classifier and min(splits["train"].images.shape[2:]) < 4:
        raise UserError("--train_classifier: images smaller than 4 x 4 are too small for the judge")
    return splits


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    with cli.errors_as_one_line():
        device = cli.resolve_device(args)
        loaded = cli.load_selected_checkpoints(args, device)
        datasets = {model.dataset for model in loaded.values()}
        if len(datasets) > 1:
            raise UserError(f"the checkpoints given were trained on {' and '.join(sorted(datasets))}; "
                            f"evaluate one dataset at a time")
        dataset = datasets.pop()
        names = cli.output_names(loaded, lambda path: dataset)  # the report's columns
        built_in = dataset in data.DATASETS
        judge_dataset = (built_in and data.DATASETS[dataset].judge) or dataset  # binarized-mnist: the MNIST judge
        classifier = args.classifier or judges.judge_path(dataset, args.checkpoint_dir,
                                                           for_writing=args.train_classifier)
        evaluation = config.from_args(EvalConfig, args)
        splits = checked_images(args, loaded, device)
        writable_dir(args.output_dir)
        if args.train_classifier:
            judge_splits = splits if judge_dataset == dataset else data.load_dataset(judge_dataset, args.data_dir, device)
            accuracy = judges.train_and_save_judge(judge_splits, classifier)
            print(f"classifier test accuracy {100 * accuracy:.2f}% -> {classifier}")
        judge, skipped = the_judge(classifier, splits, built_in, device)
        results, recipes, seeds = {}, {}, {}
        for path, model in loaded.items():
            t = time.perf_counter()
            name = names[path]
            results[name] = evaluate_model(model, splits, judge, evaluation)
            checkpoint = models.read_checkpoint(path)
            recipes.setdefault(training.recipe_of(checkpoint), []).append(name)
            seeds[name] = (checkpoint.get("config") or {}).get("seed")
            add_to_tensorboard_run(path, model.kind, results[name])
            print(f"{name}: evaluated in {time.perf_counter() - t:.1f}s", flush=True)
        baseline = measures.all_black_baseline(splits["test"].images)
        command = cli.command_line("evaluate.py", argv)
        report = {"provenance": provenance(command, time.perf_counter() - started, 1, device),
                  "dataset": dataset, "split": args.split,
                  "classifier_test_accuracy": judges.accuracy(judge, splits["test"]) if judge else None,
                  **({"skipped": skipped} if skipped else {}),
                  "models": results, "all_black_baseline": baseline,
                  # checkpoints of one recipe trained from different seeds: their mean and spread
                  "across_seeds": [across_seeds({n: results[n] for n in names}, seeds) for names in recipes.values()
                                   if len({seeds[n] for n in names}) == len(names) > 1]}
        table = reports.markdown_table(results, baseline, args.iwae_draws, dataset, args.split)
        for summary in report["across_seeds"]:
            table += "\n" + reports.seed_summary_table(summary, args.iwae_draws)
        stem = args.report_name or (
            ("metrics" if dataset == "mnist" else f"metrics_{dataset}") + ("_val" if args.split == "val" else ""))
        judged = (f"classifier judging the samples: {100 * report['classifier_test_accuracy']:.2f}% test accuracy"
                  if judge else "no classifier judges the samples")
        table += "".join(f"\nNot measured: {what}, as {why}.\n" for what, why in skipped.items())
        write_atomically(os.path.join(args.output_dir, f"{stem}.json"), strict_json(report))
        write_atomically(os.path.join(args.output_dir, f"{stem}.md"),
                         f"{dataset} {args.split} set, {reports.provenance_line(report['provenance'])}; {judged}.\n\n{table}")
        print(table)
    print(f"metrics written to {args.output_dir}/{stem}.json and {stem}.md in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()

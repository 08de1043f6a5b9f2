"""The study: which claims about the AutoEncoder and the VAE hold across training seeds?

    python study.py               # trains what is missing, evaluates every run -> readme/study.{json,md}, study_*.png
    python study.py --beta_sweep  # the beta continuum from AutoEncoder to VAE -> readme/beta_sweep.{json,md}, beta_*.png
    python study.py --quick       # 2 seeds, 1 epoch, small subsets: the whole pipeline in seconds (the tests use it)

Three steps, each re-runnable on its own results: train every (dataset, model, seed[, beta]) that is
missing, evaluate every run whose evaluation is not cached (lab/runner.py), then aggregate into means with
95 % intervals over seeds and a verdict per claim (lab/seed_study.py, lab/beta_sweep.py); tables and figures
are drawn from the aggregated results alone (lab/reports.py, lab/study_figures.py).

Seed 0 is the README's default run: its checkpoints are the committed ones in checkpoints/. Other seeds
live in checkpoints/study/<dataset>-seed<S>/ (not committed; their results are, in readme/study.json).
"""
import json
import os
import signal
import sys
import time

import matplotlib.pyplot as plt

import data
from lab import beta_sweep, cli, config, confirmatory, judge as judges, runner, seed_study, study_reports, training
from lab.config import EvalConfig, StudyConfig, TrainConfig
from lab.files import UserError, strict_json, write_atomically, writable_dir
from lab.provenance import provenance


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    return checked(p, args, argv)


def build_parser():
    p = cli.ArgumentParser(
        prog="study.py",
        description="Train (what is missing), evaluate and aggregate the AE-vs-VAE study over seeds: writes "
                    "<output_dir>/study.json (every run, means with 95 % intervals, a verdict per claim), study.md "
                    "and study_*.png, and refreshes the tables in docs/study.md and the headline in README.md. "
                    "Finished runs and their evaluations are cached, so an interrupted study continues where it "
                    "stopped.")
    p.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=None, metavar="S",
                   help="training seeds; seed 0 is the README's default run (default: 0 1 2 3 4; with --quick: 0 1)")
    p.add_argument("--datasets", nargs="+", type=cli.dataset_argument, default=None,
                   metavar="D", help="datasets, from " + ", ".join(sorted(data.DATASETS)) + ", or PATH: your own "
                                     "labelled images (a folder or .npz, docs/own-images.md), whose judge is trained "
                                     "first if they have none (default: mnist "
                                     "binarized-mnist; fashion-mnist needs Debian's dataset-fashion-mnist or the files "
                                     "in --data_dir)")
    config.add_flags(p, TrainConfig, ["checkpoint_dir", "data_dir"], helps={
        "checkpoint_dir": "seed 0's checkpoints are here, the others in <checkpoint_dir>/study/ (default: %(default)s)"})
    p.add_argument("--logdir", default=None,
                   help="TensorBoard runs of the models trained here (default: logs/study; with --quick: "
                        "<checkpoint_dir>/logs)")
    p.add_argument("-o", "--output_dir", default="readme", help="where study.json/.md and figures go (default: %(default)s)")
    p.add_argument("--readme", default="README.md",
                   help="README whose headline table (between <!-- headline:begin --> and <!-- headline:end -->) is "
                        "rewritten from study.json; 'none' leaves every Markdown file alone, --docs_dir's too "
                        "(default: %(default)s)")
    p.add_argument("--docs_dir", default="docs",
                   help="folder whose study.md and beta-continuum.md get the generated tables (between "
                        "<!-- study:begin/end --> and <!-- beta:begin/end -->) (default: %(default)s)")
    p.add_argument("--report_only", action="store_true",
                   help="train and evaluate nothing: recompute the statistics (summaries, verdicts) with this code "
                        "from the runs' values in <output_dir>/study.json (beta_sweep.json with --beta_sweep), "
                        "write them back with their own provenance, and redraw the reports, figures and Markdown "
                        "tables")
    config.add_flags(p, EvalConfig, ["num_samples", "iwae_draws", "iwae_images"],
                     defaults={"iwae_draws": seed_study.EVALUATION.iwae_draws})
    p.add_argument("--plan", default=None, metavar="PLAN.toml",
                   help="the confirmatory study of a committed plan (studies/confirmatory.toml): its runs, seeds, "
                        "measures and tests as the plan says -> <output_dir>/<plan name>/study.json and study.md; "
                        "refuses to report when the plan changed after its first run was trained")
    p.add_argument("--beta_sweep", action="store_true",
                   help="the beta continuum instead: VAEs at each --betas value and the AutoEncoder (--seeds 0 1 2 by "
                        "default) on one dataset (--datasets, default mnist) -> beta_sweep.json/.md, beta_*.png, and "
                        "the beta table in docs/beta-continuum.md")
    p.add_argument("--betas", type=cli.non_negative_float, nargs="+", default=beta_sweep.BETAS, metavar="B",
                   help="KL weights of the sweep (default: 0 0.1 0.25 0.5 1 2 4 8)")
    p.add_argument("--jobs", type=cli.positive_int, default=None, metavar="N",
                   help="runs trained and evaluated at once, each in its own process with its share of the CPU cores "
                        "(on a GPU: N processes sharing it); an interrupted parallel study resumes like a serial one "
                        "(default: " + str(runner.DEFAULT_JOBS) + ", the faster on a 2-core CPU; see docs/speed.md)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="hand the runs to the Dask cluster whose scheduler listens here instead of this machine's "
                        "worker processes (--jobs is then the cluster's business); every worker must see --checkpoint_dir "
                        "and --data_dir at the same paths (docs/cluster.md)")
    p.add_argument("--threads", type=cli.positive_int, default=None, metavar="T",
                   help="CPU threads of each run, wherever it runs, so that its numbers do not depend on the worker "
                        "(default: the CPU cores / --jobs here; 1 on a --scheduler cluster)")
    cli.add_device_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help="a smoke test of the whole pipeline: seeds 0 1, 1 epoch on 1000 training images, 500 samples, "
                        "IWAE with k = 10 on 100 images; needs --checkpoint_dir and --output_dir away from the real ones")
    return p


def checked(p, args, argv):
    """The parsed flags, checked and completed with the defaults that depend on other flags."""
    if args.quick:
        if os.path.abspath(args.checkpoint_dir) == os.path.abspath("checkpoints") or \
                os.path.abspath(args.output_dir) == os.path.abspath("readme"):
            p.error("--quick needs its own --checkpoint_dir and --output_dir (it must not touch the real study)")
        args.num_samples, args.iwae_draws, args.iwae_images = min(args.num_samples, 500), 10, 100
        args.readme = "none"
    args.datasets = args.datasets or (["mnist"] if args.beta_sweep else seed_study.DEFAULT_DATASETS)
    # runs, files and reports know a dataset by its name; a user's PATH is kept to load it
    try:
        args.dataset_specs = {data.dataset_key(d): d for d in args.datasets}
    except data.DataError as e:
        p.error(str(e))
    args.datasets = list(args.dataset_specs)
    if args.beta_sweep and len(args.datasets) > 1:
        p.error("--beta_sweep runs on one dataset: give one --datasets value")
    if args.plan and (args.beta_sweep or args.seeds or args.datasets != seed_study.DEFAULT_DATASETS):
        p.error("--plan sets the runs itself: give neither --beta_sweep, --seeds nor --datasets")
    args.logdir = args.logdir or (os.path.join(args.checkpoint_dir, "logs") if args.quick else os.path.join("logs", "study"))
    args.seeds = sorted(set(args.seeds or ([0, 1] if args.quick else beta_sweep.DEFAULT_SEEDS if args.beta_sweep
                                           else seed_study.DEFAULT_SEEDS)))
    for old, new in config.deprecated_spellings(argv if argv is not None else sys.argv[1:], EvalConfig):
        print(f"note: {old} is deprecated; its name is now {new}", file=sys.stderr)
    return args


def study_config(args, device, command):
    """The StudyConfig of the command line: where runs live, how they are evaluated and what runs them."""
    evaluation = (beta_sweep.EVALUATION if args.beta_sweep else seed_study.EVALUATION)
    evaluation = config.replace(evaluation, num_samples=args.num_samples, iwae_draws=args.iwae_draws,
                                iwae_images=args.iwae_images)
    jobs = args.jobs or runner.DEFAULT_JOBS
    threads = args.threads or (1 if args.scheduler else None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs))
    # a cluster's workers may start in another folder: they get absolute paths (on a filesystem they all share)
    where = os.path.abspath if args.scheduler else (lambda path: path)
    return StudyConfig(checkpoint_dir=where(args.checkpoint_dir), data_dir=where(args.data_dir),
                       logdir=where(args.logdir), dataset_specs=tuple(args.dataset_specs.items()), quick=args.quick,
                       device=str(device), jobs=jobs, threads=threads, scheduler=args.scheduler, command=command,
                       evaluation=evaluation)


def as_given(path, args):
    """A record's checkpoint path as the command line gave its folder (a cluster's runs get absolute paths)."""
    if os.path.isabs(args.checkpoint_dir) or not os.path.isabs(path):
        return path
    return os.path.relpath(path)


def made_by(runs, study, cache_suffix, records, rows, result_path):
    """The result's provenance entries. provenance: this invocation, with the wall time of every invocation that
    trained or evaluated its runs. An invocation that found every run finished and evaluated, rewriting a result
    of exactly these rows, made none of them: it keeps that result's provenance (a cached rerun at a later commit
    or on another machine must not be named as where the runs were made) and is named as statistics_provenance,
    as --report_only is, for the statistics it recomputed."""
    this = provenance(study.command, runner.wall_seconds_of(runs, study, cache_suffix), study.jobs, study.device)
    if records and all(r.get("from_cache") for r in records):
        previous = study_reports.read_json(result_path)
        if previous and previous.get("provenance") and previous.get("runs") == json.loads(strict_json(rows)):
            return {"provenance": previous["provenance"], "statistics_provenance": {**this, "wall_seconds": None}}
    return {"provenance": this}


def study_main(args, study):
    configs = seed_study.configurations(args.datasets, args.seeds)
    records = runner.run_all(configs, study, seed_study.prepare, seed_study.evaluate_run, "", "study")
    runs = [{"dataset": r["config"].dataset, "model": r["config"].kind, "seed": r["config"].seed,
             "checkpoint": as_given(r["checkpoint"], args),
             **{k: r[k] for k in ("checkpoint_sha256", "train_seconds", "evaluate_seconds")},
             "metrics": r["result"]["metrics"], "samplers": r["result"]["samplers"]} for r in records]
    floors = {dataset: runner.floor_of(dataset, seed_study.prepare, study) for dataset in args.datasets}
    result = {**made_by(configs, study, "", records, runs, os.path.join(args.output_dir, "study.json")),
              "settings": runner.evaluation_settings(study), "seeds": args.seeds, "datasets": args.datasets,
              "claims": [{"claim": c.text, "primary": c.metric, "sampler": c.sampler, "reason": c.reason,
                          "margin": c.margin} for c in seed_study.CLAIMS],
              "floors": floors, "runs": runs, **seed_study.statistics_of(runs)}
    write_atomically(os.path.join(args.output_dir, "study.json"), strict_json(result))
    return study_reports.study_reports(result, args)


def sweep_main(args, study):
    dataset = args.datasets[0]
    configs = beta_sweep.configurations(dataset, args.seeds, args.betas)
    records = runner.run_all(configs, study, beta_sweep.prepare, beta_sweep.evaluate_run, "-sweep", "beta sweep")
    runs = [{"dataset": r["config"].dataset, "model": r["config"].kind, "beta": r["config"].beta,
             "seed": r["config"].seed, "checkpoint": as_given(r["checkpoint"], args), **r["result"],
             "train_seconds": r["train_seconds"], "evaluate_seconds": r["evaluate_seconds"]} for r in records]
    sweep = {**made_by(configs, study, "-sweep", records, runs, os.path.join(args.output_dir, "beta_sweep.json")),
             "settings": runner.evaluation_settings(study), "dataset": dataset, "seeds": args.seeds,
             "betas": args.betas, "floor": runner.floor_of(dataset, beta_sweep.prepare, study), "runs": runs,
             "summary": beta_sweep.summarise_sweep(runs)}
    write_atomically(os.path.join(args.output_dir, "beta_sweep.json"), strict_json(sweep))
    return study_reports.sweep_reports(sweep, args)


def plan_main(args, device, command):
    """The confirmatory study of --plan: lock the plan, make its runs, test its claims, refuse if it changed."""
    plan = confirmatory.read_plan(args.plan)
    if not args.quick and plan.device != device.type:
        raise UserError(f"--plan {args.plan} says its runs are made on {plan.device}; this is {device.type}")
    evaluation = confirmatory.evaluation(plan)
    if args.quick:
        evaluation = config.replace(evaluation, num_samples=min(evaluation.num_samples, args.num_samples))
    study = config.replace(study_config(args, device, command), evaluation=evaluation, threads=args.threads or 1,
                           runs_folder=os.path.join("confirmatory", plan.name), keep_failed_runs=True)
    configs = confirmatory.configurations(plan)
    if not args.quick:
        confirmatory.check_recipe([runner.train_config_of(r, study) for r in configs])
    locked = confirmatory.lock(plan, args.checkpoint_dir, quick=args.quick)
    records = runner.run_all(configs, study, seed_study.prepare, seed_study.evaluate_run, "", plan.name)
    runs = [{"dataset": r["config"].dataset, "model": r["config"].kind, "seed": r["config"].seed,
             "trained_commit": r["trained_commit"], "trained_dirty": r["trained_dirty"],
             "checkpoint": as_given(r["checkpoint"], args),
             **{k: r[k] for k in ("checkpoint_sha256", "train_seconds", "evaluate_seconds")},
             **({"failed": r["failed"]} if r.get("failed") else {}),
             "metrics": r["result"]["metrics"], "samplers": r["result"]["samplers"]} for r in records]
    confirmatory.check_unchanged(confirmatory.read_plan(args.plan), locked)  # not edited while its runs ran
    confirmatory.check_descent(locked, runs)
    result = {**made_by(configs, study, "", records, runs, os.path.join(args.output_dir, plan.name, "study.json")),
              "plan": confirmatory.plan_entry(plan, locked),
              "settings": runner.evaluation_settings(study, plan.datasets[0]),
              "seeds": {kind: list(plan.seeds_of(kind)[:plan.n]) for kind in plan.models},
              "datasets": list(plan.datasets),
              "claims": [{k: c[k] for k in ("text", "metric", "sampler", "direction", "smallest_effect", "why")}
                         for c in plan.claims],
              "floors": {d: runner.floor_of(d, seed_study.prepare, study) for d in plan.datasets},
              "runs": runs, "summary": seed_study.summarise(runs),
              "comparisons": confirmatory.compare(runs, plan), "diverged": seed_study.diverged(runs)}
    output_dir = os.path.join(args.output_dir, plan.name)
    writable_dir(output_dir)
    write_atomically(os.path.join(output_dir, "study.json"), strict_json(result))
    written = [os.path.join(plan.name, name) for name in study_reports.confirmatory_reports(result, output_dir)]
    if args.readme != "none":  # the README's headline: these verdicts beside the exploratory study's
        study_reports.refresh_headline(args.readme, args.output_dir, confirmatory=result,
                                       confirmatory_path=os.path.join(output_dir, "study.json"))
    return written


def train_missing_judges(args, device):
    """Before any run: the judge of each of the user's datasets that has none (the sample claims need one),
    trained from their labels as `evaluate.py --train_classifier` would, into <checkpoint_dir>/judges/."""
    for name, spec in args.dataset_specs.items():
        path = judges.judge_path(name, args.checkpoint_dir)
        if name in data.DATASETS or os.path.exists(path):
            continue
        splits = data.load_dataset(spec, args.data_dir, device)
        if (splits["train"].labels < 0).any():
            raise UserError(f"{spec}: the study's sample claims need a judge of these images, and a judge learns "
                            f"from labels, which they have not (docs/own-images.md)")
        accuracy = judges.train_and_save_judge(splits, path)
        print(f"{name}: no judge yet; trained one, test accuracy {100 * accuracy:.2f}% -> {path}")


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, training.stop_on_sigterm)
    started = time.perf_counter()
    command = cli.command_line("study.py", argv)
    plt.switch_backend("Agg")  # files only
    try:
        with cli.errors_as_one_line():
            device = cli.resolve_device(args)
            if not args.report_only:
                train_missing_judges(args, device)
            writable_dir(args.output_dir)
            if args.report_only:
                written = study_reports.from_json(args, command)
            elif args.plan:
                written = plan_main(args, device, command)
            else:
                written = (sweep_main if args.beta_sweep else study_main)(args, study_config(args, device, command))
    except runner.RunFailed as failed:
        for line in str(failed).splitlines():
            print(f"error: {line}", file=sys.stderr)
        print("every run that finished is cached; fix the cause and run the same command again", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        print(f"\n{stop.args[0] if stop.args else 'interrupted'}: finished runs and evaluations are kept; "
              f"the same command continues (an unfinished run resumes from its last epoch)", file=sys.stderr)
        sys.exit(143 if stop.args and stop.args[0] == "terminated" else 130)
    print(f"written to {args.output_dir}/: {', '.join(written)} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()

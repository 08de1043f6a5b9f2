"""The cached experiment runner: a list of run configurations in, one record per run out.

Each run is trained with train.py's default recipe unless its checkpoint already holds a finished run of that
very configuration (an unfinished one is resumed), then evaluated unless an evaluation of that very checkpoint
(its SHA-256) with the same settings is cached. So an interrupted experiment continues where it stopped, and a
second call retrains and re-evaluates nothing (as in google-research/disentanglement_lib: train -> evaluate ->
aggregate, each re-runnable on its own results).

Seed 0 of the default models is the README's default run, in <checkpoint_dir> itself; every other run lives
in <checkpoint_dir>/study/<dataset>-seed<S>/, its cached evaluations in <checkpoint_dir>/study/evaluations/.
"""
import json
import os
import sys
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

import data
import models
from lab import training
from lab.files import UserError, file_sha256, strict_json, write_atomically, writable_dir

DEFAULT_JOBS = 2  # two 1-thread runs side by side beat one 2-thread run on a 2-core CPU (docs/speed.md)
# Bump when a change to an evaluation (lab/measures.py, evaluation.py, sample_measures.py, judge.py, samplers.py,
# seed_study.py's and beta_sweep.py's evaluate_run) can move a number: cached evaluations are then redone.
# tests/test_stage_versions.py fails on any change to that code until the fingerprint is re-recorded (after a bump).
# 3: bounds on the same images, tiled quadrature, recon at the posterior mean, density and coverage.
EVALUATION_VERSION = 3
CACHE_BOOKKEEPING = ("checkpoint_sha256", "settings", "evaluate_seconds")


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    kind: str  # "autoencoder" or "vae"
    seed: int
    beta: float = 1.0  # None for the AutoEncoder in the β sweep's records

    @property
    def run_id(self):
        return f"{self.dataset}-{training.run_name(self.kind, self.beta, 'mnist')}-seed{self.seed}"


def dataset_spec(dataset, args):
    """What loads a dataset the study knows by name: the name itself, or a user's PATH (study.py --datasets)."""
    return getattr(args, "dataset_specs", {}).get(dataset, dataset)


def recipe_argv(config, checkpoint_dir, args):
    """train.py's command line for one run: the default recipe; only seed, dataset and beta vary."""
    beta = 1.0 if config.beta is None else config.beta
    argv = ["--dataset", dataset_spec(config.dataset, args), "--seed", str(config.seed), "--checkpoint_dir", checkpoint_dir,
            "--data_dir", args.data_dir, "--logdir", args.logdir, "--beta", repr(float(beta))]
    return argv + (["--epochs", "1", "--max_train_images", "1000"] if args.quick else [])


def run_checkpoint(config, args):
    """(folder, checkpoint path) of a run: seed 0 of the default models is the default run, in checkpoint_dir."""
    default_run = config.seed == 0 and (config.kind == "autoencoder" or config.beta == 1)
    folder = args.checkpoint_dir if default_run else \
        os.path.join(args.checkpoint_dir, "study", f"{config.dataset}-seed{config.seed}")
    return folder, os.path.join(folder, training.run_name(config.kind, config.beta, config.dataset) + ".pt")


def checkpoint_state(path, train_args, beta=1.0):
    """'finished' if path holds a finished run of exactly this configuration, 'unfinished' if it holds one
    that can be resumed, else 'missing' (no file, another configuration, or unreadable: retrained, and
    training moves the old file to previous/ first)."""
    if not os.path.exists(path):
        return "missing"
    try:
        checkpoint = models.read_checkpoint(path)
    except models.CheckpointError:
        return "missing"
    config = checkpoint.get("config") or {}
    source = checkpoint.get("data_source")
    if source and (train_args.dataset in data.DATASETS
                   or source.get("sha256") != data.user_image_set(train_args.dataset).sha256):
        return "missing"  # a user's images changed since: retrained (training moves the old file aside)
    same = (checkpoint.get("dataset", "mnist") == data.dataset_key(train_args.dataset)
            and all(config.get(k) == getattr(train_args, k) for k in training.RESUMED_SETTINGS if k != "dataset")
            and config.get("max_train_images") == train_args.max_train_images
            and config.get("precision", "fp32") == train_args.precision
            and config.get("max_grad_norm") == train_args.max_grad_norm
            and config.get("compile", False) == train_args.compile
            and config.get("training_version") == training.TRAINING_VERSION
            and checkpoint["model_args"].get("beta", 1.0) == (1.0 if checkpoint["kind"] == "autoencoder" else beta)
            and checkpoint["model_args"].get("iwae_k", 1) == 1)
    if not same:
        return "missing"
    if checkpoint.get("completed"):
        return "finished"
    return "unfinished" if "random_state" in checkpoint else "missing"


def evaluation_settings(args, dataset=None):
    """What an evaluation's numbers depend on besides the checkpoint; with a dataset, also its judge's SHA-256
    (retraining the judge moves every sample measure)."""
    settings = {"version": EVALUATION_VERSION, "num_samples": args.num_samples, "iwae_k": args.iwae_k,
                "iwae_images": args.iwae_images, "device": torch.device(args.device).type}
    if dataset is not None:
        from lab.judge import judge_path
        path = judge_path(dataset)
        settings["judge_sha256"] = file_sha256(path) if os.path.exists(path) else None
    return settings


def cached_evaluation(cache_path, sha256, settings):
    try:
        with open(cache_path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    return cached if cached.get("checkpoint_sha256") == sha256 and cached.get("settings") == settings else None


_splits = {}  # each process loads a dataset once, however many of its runs it gets


def splits_of(dataset, args):
    key = (dataset, args.data_dir, args.quick, str(args.device))
    if key not in _splits:
        _splits[key] = data.load_dataset(dataset_spec(dataset, args), args.data_dir, args.device,
                                         1000 if args.quick else None)
    return _splits[key]


def cache_path_of(config, args, cache_suffix):
    return os.path.join(args.checkpoint_dir, "study", "evaluations", f"{config.run_id}{cache_suffix}.json")


def run_state(config, args):
    """(checkpoint path, train.py's arguments of the run, 'finished' / 'unfinished' / 'missing')."""
    folder, path = run_checkpoint(config, args)
    flag = "--train_autoencoder" if config.kind == "autoencoder" else "--train_vae"
    train_args = training.parse_args([flag] + recipe_argv(config, folder, args))
    return path, train_args, checkpoint_state(path, train_args, config.beta)


def cached_record(config, args, cache_suffix):
    """The record of a run that needs no work (its checkpoint holds the finished run and its evaluation is
    cached), read from the files alone; None if it needs work."""
    path, _, state = run_state(config, args)
    if state != "finished":
        return None
    sha256 = file_sha256(path)
    cached = cached_evaluation(cache_path_of(config, args, cache_suffix), sha256,
                               evaluation_settings(args, config.dataset))
    return None if cached is None else record(config, path, sha256, cached, 0.0)


def record(config, path, sha256, cached, train_seconds):
    trained = models.read_checkpoint(path).get("train_seconds")  # the run's, over every invocation that trained it
    return {"config": config, "checkpoint": path, "checkpoint_sha256": sha256,
            "result": {k: v for k, v in cached.items() if k not in CACHE_BOOKKEEPING},
            "train_seconds": None if trained is None else round(trained, 1),
            "train_seconds_this_invocation": round(train_seconds, 1),
            "evaluate_seconds": round(cached["evaluate_seconds"], 1)}


def run_one(config, prepare, args, evaluate_one, cache_suffix):
    """Train (unless finished) and evaluate (unless cached) one run; its record. Data and the reference it is
    scored against (prepare(dataset, args)) are loaded only when there is work. Runs in a worker with --jobs."""
    path, train_args, state = run_state(config, args)
    train_seconds = 0.0
    if state != "finished":
        started = time.perf_counter()
        writable_dir(os.path.dirname(path))
        writable_dir(args.logdir)
        train_args.resume = state == "unfinished"
        beta = None if config.kind == "autoencoder" else config.beta
        training.train_one(config.kind, beta, splits_of(config.dataset, args), train_args, args.device)
        train_seconds = time.perf_counter() - started
    sha256 = file_sha256(path)
    settings = evaluation_settings(args, config.dataset)
    cache_path = cache_path_of(config, args, cache_suffix)
    cached = cached_evaluation(cache_path, sha256, settings)
    if cached is None:
        t = time.perf_counter()
        result = evaluate_one(models.load_checkpoint(path, map_location=args.device), splits_of(config.dataset, args),
                              prepared_of(config.dataset, prepare, args), args)
        cached = {"checkpoint_sha256": sha256, "settings": settings, **result,
                  "evaluate_seconds": time.perf_counter() - t}
        write_atomically(cache_path, strict_json(cached))
    return record(config, path, sha256, cached, train_seconds)


_prepared = {}


def prepared_of(dataset, prepare, args):
    """prepare(dataset, args) once per process (the judge and the test images' features: a few seconds)."""
    key = (dataset, prepare.__module__, str(args.device))
    if key not in _prepared:
        _prepared[key] = prepare(dataset, args)
    return _prepared[key]


def _start_worker(threads):
    """Each worker process computes with its share of the cores. Ctrl-C is the main process's to handle (SIGINT
    is ignored from before the worker starts); SIGTERM stops the run as in train.py, cleaning up its files; and
    a worker whose main process is gone (kill -9) stops too, instead of holding its run's lock."""
    import signal
    import threading
    signal.signal(signal.SIGTERM, training.stop_on_sigterm)
    torch.set_num_threads(threads)
    # the main process's bar says what each run is doing; the workers' epoch lines and bars would garble it
    sys.stdout = sys.stderr = open(os.devnull, "w")
    # ...and their bars need no lock shared between processes (a semaphore, which a stopped worker would leak)
    tqdm.set_lock(threading.RLock())
    parent = os.getppid()

    def stop_when_orphaned():
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=stop_when_orphaned, daemon=True).start()


def _run_in_worker(*run_args):
    """run_one in a worker. A stopped run (SIGTERM: Ctrl-C in the main process, or its death) ends the worker
    process once the run has cleaned up its files: the pool would otherwise start the next run it has queued."""
    try:
        return run_one(*run_args)
    except KeyboardInterrupt:
        os._exit(143)


def floor_of(dataset, prepare, args):
    """The floor of the sample measures (real training images scored as if they were samples), cached like the
    evaluations: a rerun with every run cached needs neither the data nor the judge's features."""
    from lab.judge import judge_path
    path = os.path.join(args.checkpoint_dir, "study", "evaluations", f"floor-{dataset}.json")
    key = {"version": EVALUATION_VERSION, "num_samples": args.num_samples,
           "judge_sha256": file_sha256(judge_path(dataset)) if os.path.exists(judge_path(dataset)) else None}
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["floor"]
    except (OSError, ValueError):
        pass
    floor = prepared_of(dataset, prepare, args)["floor"]
    write_atomically(path, strict_json({"key": key, "floor": floor}))
    return floor


def ledger_path(args):
    return os.path.join(args.checkpoint_dir, "study", "invocations.jsonl")


def log_invocation(args, run_ids, seconds):
    """One line per invocation that trained or evaluated runs (also one stopped or failed part-way): the wall
    time behind a result is the sum over the invocations that worked on its runs (wall_seconds_of)."""
    line = json.dumps({"command": getattr(args, "command", None), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "wall_seconds": round(seconds, 1), "runs": run_ids}) + "\n"
    try:
        with open(ledger_path(args), "a") as f:  # one short append: whole lines even from two processes
            f.write(line)
    except OSError:
        pass  # bookkeeping only: the runs themselves are saved; the total then undercounts


def wall_seconds_of(configs, args, cache_suffix):
    """The wall time of the invocations that trained or evaluated any of these runs for this experiment (the
    study, or the sweep: cache_suffix), summed; with --jobs runs overlap, so this is less than the runs' own
    seconds added up. None when no invocation is on record (runs made before the ledger existed)."""
    wanted, total, found = {c.run_id + cache_suffix for c in configs}, 0.0, False
    try:
        with open(ledger_path(args)) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash
                if wanted & set(entry.get("runs", [])):
                    total, found = total + entry.get("wall_seconds", 0.0), True
    except OSError:
        pass
    return total if found else None


class RunFailed(Exception):
    """One or more runs failed; the message has one line per failed run."""


def run_all(configs, args, prepare, evaluate_one, cache_suffix, title):
    """Train and evaluate each configuration, from the caches where they hold; returns the per-run records, in
    the order of configs. prepare(dataset, args): what every run of a dataset is scored against.

    evaluate_one(model, splits, prepared, args) -> a JSON-able dict, cached per checkpoint. With args.jobs > 1,
    that many runs go at once, each in a worker process with its share of the cores; a run that fails is
    reported by its error line once the others have finished (RunFailed)."""
    from lab.cli import resolve_device
    args.device = args.device if isinstance(args.device, torch.device) else resolve_device(args)
    jobs = getattr(args, "jobs", 1)
    writable_dir(os.path.join(args.checkpoint_dir, "study", "evaluations"))
    records = {c: r for c in configs if (r := cached_record(c, args, cache_suffix)) is not None}  # from the files
    todo = [c for c in configs if c not in records]
    started = time.perf_counter()
    try:
        return _run(configs, todo, records, args, prepare, evaluate_one, cache_suffix, title, jobs)
    finally:
        if todo:
            log_invocation(args, [c.run_id + cache_suffix for c in todo], time.perf_counter() - started)


def _run(configs, todo, records, args, prepare, evaluate_one, cache_suffix, title, jobs):
    import signal
    from concurrent.futures.process import BrokenProcessPool
    for dataset in dict.fromkeys(c.dataset for c in todo):
        prepared_of(dataset, prepare, args)  # a missing judge or damaged data fails now, not after every run
    # the runs found done count from the start, so the rate (and the ETA) is that of the runs that need work
    bar = tqdm(total=len(configs), initial=len(records), unit="run", desc=title, file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {n}/{total} runs trained and evaluated [{elapsed}<{remaining}] {postfix}")
    failures, lost = [], []
    if jobs == 1 or len(todo) <= 1:
        for config in todo:
            bar.set_postfix_str(config.run_id)
            try:
                records[config] = run_one(config, prepare, args, evaluate_one, cache_suffix)
            except (UserError, data.DataError, models.CheckpointError) as e:
                failures.append(f"{config.run_id}: {e}")
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        threads = max(1, (os.cpu_count() or 1) // min(jobs, len(todo)))
        # spawn, not fork: a forked child of a process that has used PyTorch's thread pools can hang
        pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(threads,))
        try:
            # SIGINT is ignored while the workers start, which they inherit: Ctrl-C is the main process's to
            # handle (one pressed in these milliseconds is lost); SIGTERM here stops the started workers below
            interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                futures = {pool.submit(_run_in_worker, c, prepare, args, evaluate_one, cache_suffix): c for c in todo}
            finally:
                signal.signal(signal.SIGINT, interrupt)
            for future in as_completed(futures):
                config = futures[future]
                try:
                    records[config] = future.result()
                except (UserError, data.DataError, models.CheckpointError) as e:
                    failures.append(f"{config.run_id}: {e}")
                except BrokenProcessPool:
                    lost.append(config.run_id)
                except Exception as e:  # noqa: BLE001 (a worker's unexpected error: reported like the others)
                    first_line = (str(e).strip().splitlines() or [""])[0][:300]
                    failures.append(f"{config.run_id}: {type(e).__name__}: {first_line}")
                bar.set_postfix_str(f"{config.run_id} done")
                bar.update()
        except KeyboardInterrupt:
            for process in list(pool._processes.values()):  # stop the workers' runs too; they keep their last epoch
                process.terminate()
            pool.shutdown(cancel_futures=True)
            raise
        pool.shutdown()
    bar.close()
    if lost:
        failures.append(f"{len(lost)} runs not finished ({', '.join(lost)}): a worker process died (killed, or out "
                        f"of memory) and took its pool down; the same command resumes them")
    if failures:
        raise RunFailed("\n".join(failures))
    return [records[c] for c in configs]

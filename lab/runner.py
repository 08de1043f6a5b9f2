"""The cached experiment runner: a list of runs in, one record per run out.

Each run is trained with train.py's default recipe unless its checkpoint already holds a finished run of that
very configuration (an unfinished one is resumed), then evaluated unless an evaluation of that very checkpoint
(its SHA-256) with the same settings is cached. So an interrupted experiment continues where it stopped, and a
second call retrains and re-evaluates nothing (as in google-research/disentanglement_lib: train -> evaluate ->
aggregate, each re-runnable on its own results). Each run is one task for an engine (lab/engine.py): this
process, worker processes here, or a Dask cluster.

Seed 0 of the default models is the README's default run, in <checkpoint_dir> itself; every other run lives
in <checkpoint_dir>/study/<dataset>-seed<S>/, its cached evaluations in <checkpoint_dir>/study/evaluations/.
Each run's output and any traceback go to a log file beside its checkpoint (<name>.log).
"""
import contextlib
import functools
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import torch
from tqdm import tqdm

import data
import models
from lab import config as configs, engine, training
from lab.files import UserError, WriterLock, file_sha256, strict_json, write_atomically, writable_dir

DEFAULT_JOBS = 2  # two 1-thread runs side by side beat one 2-thread run on a 2-core CPU (docs/speed.md)
# Bump when a change to an evaluation (lab/measures.py, evaluation.py, sample_measures.py, judge.py, samplers.py,
# seed_study.py's and beta_sweep.py's evaluate_run) can move a number: cached evaluations are then redone.
# tests/test_stage_versions.py fails on any change to that code until the fingerprint is re-recorded (after a bump).
# 3: bounds on the same images, tiled quadrature, recon at the posterior mean, density and coverage.
# 4: the quadrature's step certified per image (quadrature_step_error_nats), the IWAE weights' effective sample size.
# 5: an image refined once per pass (version 4 could halve a just-refined image's step again unchecked: a finer
#    final step than needed, so values within the bound of version 5's, and up to three times the decoding).
EVALUATION_VERSION = 5
CACHE_BOOKKEEPING = ("checkpoint_sha256", "settings", "evaluate_seconds")
# the libraries an evaluation's numbers come from: an upgrade of one re-evaluates (it retrains nothing)
EVALUATION_LIBRARIES = ("torch", "numpy", "scipy", "sklearn", "torchmetrics")


@dataclass(frozen=True)
class RunConfig:
    """One run of an experiment: its dataset, model kind, seed and (VAEs of the β sweep) beta."""
    dataset: str
    kind: str  # "autoencoder" or "vae"
    seed: int
    beta: float = 1.0  # None for the AutoEncoder in the β sweep's records

    @property
    def run_id(self):
        return f"{self.dataset}-{training.run_name(self.kind, self.beta, 'mnist')}-seed{self.seed}"


def run_checkpoint(run, study):
    """(folder, checkpoint path) of a run: seed 0 of the default models is the default run, in checkpoint_dir;
    the others are in <checkpoint_dir>/<runs_folder>/<dataset>-seed<S>/."""
    default_run = run.seed == 0 and (run.kind == "autoencoder" or run.beta == 1) and study.runs_folder == "study"
    folder = study.checkpoint_dir if default_run else \
        os.path.join(study.checkpoint_dir, study.runs_folder, f"{run.dataset}-seed{run.seed}")
    return folder, os.path.join(folder, training.run_name(run.kind, run.beta, run.dataset) + ".pt")


def train_config_of(run, study):
    return study.train_config(run.kind, run.dataset, run.seed, run.beta, run_checkpoint(run, study)[0])


def checkpoint_state(path, wanted):
    """'finished' if path holds a finished run whose identity (lab/config.py: every recipe field and the seed)
    is that of the TrainConfig wanted, 'unfinished' if it holds one that can be resumed, else 'missing' (no
    file, another run, or unreadable: retrained, and training moves the old file to previous/ first)."""
    if not os.path.exists(path):
        return "missing"
    try:
        checkpoint = models.read_checkpoint(path)
    except models.CheckpointError:
        return "missing"
    source = checkpoint.get("data_source")
    if source and (wanted.dataset in data.DATASETS
                   or source.get("sha256") != data.user_image_set(wanted.dataset, wanted.image_size).sha256):
        return "missing"  # a user's images changed since: retrained (training moves the old file aside)
    if configs.identity(configs.from_checkpoint(checkpoint)) != configs.identity(wanted):
        return "missing"
    if checkpoint.get("completed"):
        return "finished"
    return "unfinished" if "random_state" in checkpoint else "missing"


def library_versions():
    import importlib
    return {name: getattr(importlib.import_module(name), "__version__", None) for name in EVALUATION_LIBRARIES}


def evaluation_settings(study, dataset=None):
    """What an evaluation's numbers depend on besides the checkpoint: the evaluation's version and cache fields
    (lab/config.py: EvalConfig), the device kind, the libraries' versions; with a dataset, also its judge's
    SHA-256 (retraining the judge moves every sample measure)."""
    settings = {"version": EVALUATION_VERSION, **configs.cache_key(study.evaluation),
                "device": torch.device(study.device).type, "libraries": library_versions()}
    if dataset is not None:
        path = judge_path_of(dataset, study)
        settings["judge_sha256"] = file_sha256(path) if os.path.exists(path) else None
    return settings


def judge_path_of(dataset, study):
    from lab.judge import judge_path
    return judge_path(dataset, study.checkpoint_dir)


def cached_evaluation(cache_path, sha256, settings):
    try:
        with open(cache_path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    return cached if cached.get("checkpoint_sha256") == sha256 and cached.get("settings") == settings else None


@functools.lru_cache(maxsize=4)
def splits_of(spec, data_dir, quick, device):
    """A dataset's splits, loaded once per process however many of its runs the process gets."""
    return data.load_dataset(spec, data_dir, torch.device(device), 1000 if quick else None)


def run_splits(dataset, study):
    return splits_of(study.dataset_spec(dataset), study.data_dir, study.quick, study.device)


def cache_path_of(run, study, cache_suffix):
    return os.path.join(study.checkpoint_dir, study.runs_folder, "evaluations", f"{run.run_id}{cache_suffix}.json")


def log_path_of(run, study, cache_suffix):
    """The run's log file, beside its checkpoint: its training and evaluation output, and any traceback."""
    return os.path.splitext(run_checkpoint(run, study)[1])[0] + cache_suffix + ".log"


def cached_record(run, study, cache_suffix):
    """The record of a run that needs no work (its checkpoint holds the finished run and its evaluation is
    cached), read from the files alone; None if it needs work."""
    path = run_checkpoint(run, study)[1]
    if checkpoint_state(path, train_config_of(run, study)) != "finished":
        return None
    sha256 = file_sha256(path)
    cached = cached_evaluation(cache_path_of(run, study, cache_suffix), sha256,
                               evaluation_settings(study, run.dataset))
    return None if cached is None else {**record(run, path, sha256, cached, 0.0), "from_cache": True}


def record(run, path, sha256, cached, train_seconds):
    checkpoint = models.read_checkpoint(path)
    trained = checkpoint.get("train_seconds")  # the run's, over every invocation that trained it
    code = checkpoint.get("code") or {}
    return {"config": run, "checkpoint": path, "checkpoint_sha256": sha256,
            "trained_commit": code.get("commit"), "trained_dirty": code.get("dirty"),
            "result": {k: v for k, v in cached.items() if k not in CACHE_BOOKKEEPING},
            "train_seconds": None if trained is None else round(trained, 1),
            "train_seconds_this_invocation": round(train_seconds, 1),
            "evaluate_seconds": round(cached["evaluate_seconds"], 1)}


def run_one(run, study, prepare, evaluate_one, cache_suffix, references=None):
    """Train (unless finished) and evaluate (unless cached) one run; its record. Data and the reference it is
    scored against are loaded only when there is work: references[dataset] where the study computed it once
    for every run (references_for), else prepare(dataset, study) here."""
    path = run_checkpoint(run, study)[1]
    wanted = train_config_of(run, study)
    state = checkpoint_state(path, wanted)
    train_seconds = 0.0
    device = torch.device(study.device)
    if state == "finished":
        WriterLock.remove_if_stale(path)  # a worker killed as it finished the run leaves its lock's file behind
    else:
        started = time.perf_counter()
        writable_dir(wanted.checkpoint_dir)
        writable_dir(wanted.logdir)
        try:
            training.train_one(wanted, run_splits(run.dataset, study), device, resume=state == "unfinished")
        except training.LossNotFinite as e:
            if not study.keep_failed_runs:
                raise
            return failed_record(run, path, str(e))
        train_seconds = time.perf_counter() - started
    sha256 = file_sha256(path)
    settings = evaluation_settings(study, run.dataset)
    cache_path = cache_path_of(run, study, cache_suffix)
    cached = cached_evaluation(cache_path, sha256, settings)
    if cached is None:
        t = time.perf_counter()
        reference = on_device((references or {}).get(run.dataset) or prepare(run.dataset, study), device)
        result = evaluate_one(models.load_checkpoint(path, map_location=device), run_splits(run.dataset, study),
                              reference, study)
        cached = {"checkpoint_sha256": sha256, "settings": settings, **result,
                  "evaluate_seconds": time.perf_counter() - t}
        write_atomically(cache_path, strict_json(cached))
    return record(run, path, sha256, cached, train_seconds)


def failed_record(run, path, why):
    """The record of a run whose training stopped on a non-finite loss: no measure, and why (its last good epoch
    stays in its checkpoint; a rerun resumes from it, and on the same CPU stops at the same step again)."""
    from lab.provenance import code_state
    # the code that trained it: its checkpoint's, or (no epoch saved) this code, which just ran it
    code = (models.read_checkpoint(path).get("code") if os.path.exists(path) else None) or code_state()
    return {"config": run, "checkpoint": path, "checkpoint_sha256": None, "trained_commit": code.get("commit"),
            "trained_dirty": code.get("dirty"), "failed": why, "result": {"metrics": {}, "samplers": {}},
            "train_seconds": None, "train_seconds_this_invocation": None, "evaluate_seconds": None}


class RunError(UserError):
    """A run failed on something unexpected; its traceback is in the run's log file, which the message names."""


_one_run_at_a_time = threading.Lock()


@contextlib.contextmanager
def threads_of(study):
    """PyTorch computes with study.threads CPU threads inside (the count a run's numbers are made with), and with
    what it had before afterwards."""
    threads = torch.get_num_threads()
    if study.threads:
        torch.set_num_threads(study.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_task(run, study, prepare, evaluate_one, cache_suffix, quiet=True, references=None):
    """One run as a task for an engine: with study.threads CPU threads whatever the machine (so its numbers do
    not depend on where it ran), its output (quiet: all of it) and any traceback in its log file. One run at a
    time per process: runs share torch's random stream and the process's stdout (a Dask worker with several
    threads would otherwise interleave them)."""
    with _one_run_at_a_time, threads_of(study):
        return _logged_run(run, study, prepare, evaluate_one, cache_suffix, quiet, references)


def _logged_run(run, study, prepare, evaluate_one, cache_suffix, quiet, references):
    log_path = log_path_of(run, study, cache_suffix)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {run.run_id}{cache_suffix} on {os.uname().nodename} "
                  f"(pid {os.getpid()})\n")
        log.flush()
        redirect = (contextlib.redirect_stdout(log), contextlib.redirect_stderr(log)) if quiet else ()
        with contextlib.ExitStack() as stack:
            for r in redirect:
                stack.enter_context(r)
            try:
                return run_one(run, study, prepare, evaluate_one, cache_suffix, references)
            except (UserError, data.DataError, models.CheckpointError, KeyboardInterrupt) as e:
                log.write(f"stopped: {e!r}\n")
                raise
            except Exception as e:  # noqa: BLE001 (a bug: its whole traceback is kept, the error line names it)
                log.write(traceback.format_exc())
                first_line = (str(e).strip().splitlines() or [""])[0][:300]
                raise RunError(f"{type(e).__name__}: {first_line} (traceback in {log_path})") from None


def references_for(datasets, prepare, study):
    """{dataset: prepare(dataset, study)}: what every run of a dataset is scored against (the judge and the test
    images' features: a few seconds), computed once here for all the runs instead of once per run, with the
    runs' thread count, so that a run's numbers are the ones it would get computing it itself. A missing judge
    or damaged data fails here, before any run starts."""
    with threads_of(study):
        references = {dataset: prepare(dataset, study) for dataset in datasets}
    for dataset, reference in references.items():  # the study's floor_of then finds it
        _cached_floor(dataset, study, reference["floor"])
    return references


def on_device(reference, device):
    """The reference with its judge and tensors on device. It travels to worker processes and Dask workers with
    them on the CPU (an Apple GPU's tensors cannot be shared between processes); the values are the same."""
    return {k: v.to(device) if isinstance(v, (torch.Tensor, torch.nn.Module)) else v for k, v in reference.items()}


def floor_of(dataset, prepare, study):
    """The floor of the sample measures (real training images scored as if they were samples), cached like the
    evaluations: a rerun with every run cached needs neither the data nor the judge's features."""
    floor = _cached_floor(dataset, study)
    return floor if floor is not None else references_for([dataset], prepare, study)[dataset]["floor"]


def _cached_floor(dataset, study, floor=None):
    """The cached floor of dataset (None if there is none for this code, libraries and judge); with floor given,
    cache it unless it is cached already."""
    path = os.path.join(study.checkpoint_dir, study.runs_folder, "evaluations", f"floor-{dataset}.json")
    judge = judge_path_of(dataset, study)
    key = {"version": EVALUATION_VERSION, "num_samples": study.evaluation.num_samples,
           "libraries": library_versions(), "judge_sha256": file_sha256(judge) if os.path.exists(judge) else None}
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["floor"]
    except (OSError, ValueError):
        pass
    if floor is not None:
        write_atomically(path, strict_json({"key": key, "floor": floor}))
    return floor


def ledger_path(study):
    return os.path.join(study.checkpoint_dir, study.runs_folder, "invocations.jsonl")


def log_invocation(study, run_ids, seconds):
    """One line per invocation that trained or evaluated runs (also one stopped or failed part-way): the wall
    time behind a result is the sum over the invocations that worked on its runs (wall_seconds_of)."""
    line = json.dumps({"command": study.command, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "wall_seconds": round(seconds, 1), "runs": run_ids}) + "\n"
    try:
        with open(ledger_path(study), "a") as f:  # one short append: whole lines even from two processes
            f.write(line)
    except OSError:
        pass  # bookkeeping only: the runs themselves are saved; the total then undercounts


def wall_seconds_of(runs, study, cache_suffix):
    """The wall time of the invocations that trained or evaluated any of these runs for this experiment (the
    study, or the sweep: cache_suffix), summed; with --jobs runs overlap, so this is less than the runs' own
    seconds added up. None when no invocation is on record (runs made before the ledger existed)."""
    wanted, total, found = {r.run_id + cache_suffix for r in runs}, 0.0, False
    try:
        with open(ledger_path(study)) as f:
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


def one_line(error):
    if isinstance(error, (UserError, data.DataError, models.CheckpointError)):
        return str(error)
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"


class RunFailed(Exception):
    """One or more runs failed; the message has one line per failed run."""


def run_all(runs, study, prepare, evaluate_one, cache_suffix, title):
    """Train and evaluate each run, from the caches where they hold; returns the per-run records, in the order
    of runs. prepare(dataset, study): what every run of a dataset is scored against; evaluate_one(model, splits,
    prepared, study) -> a JSON-able dict, cached per checkpoint. The runs that need work go to the study's engine:
    this process (jobs 1), jobs worker processes, or the Dask scheduler; a run that fails is reported by its
    error line once the others have finished (RunFailed)."""
    writable_dir(os.path.join(study.checkpoint_dir, study.runs_folder, "evaluations"))
    records = {r: rec for r in runs if (rec := cached_record(r, study, cache_suffix)) is not None}  # from the files
    todo = [r for r in runs if r not in records]
    started = time.perf_counter()
    try:
        return _run(runs, todo, records, study, prepare, evaluate_one, cache_suffix, title)
    finally:
        if todo:
            log_invocation(study, [r.run_id + cache_suffix for r in todo], time.perf_counter() - started)


def _run(runs, todo, records, study, prepare, evaluate_one, cache_suffix, title):
    references = references_for(list(dict.fromkeys(r.dataset for r in todo)), prepare, study)
    in_workers = bool(study.scheduler) or (study.jobs > 1 and len(todo) > 1)
    if in_workers:  # pickled for each task: its tensors and judge travel on the CPU (on_device moves them back)
        references = {dataset: on_device(reference, "cpu") for dataset, reference in references.items()}
    task = functools.partial(run_task, study=study, prepare=prepare, evaluate_one=evaluate_one,
                             cache_suffix=cache_suffix, quiet=in_workers, references=references)
    if not todo:
        done = iter(())
    elif study.scheduler:
        done = engine.dask_cluster(task, todo, study.scheduler, key_of=lambda r: f"{r.run_id}{cache_suffix}")
    elif in_workers:
        done = engine.process_pool(task, todo, min(study.jobs, len(todo)))
    else:
        done = engine.in_this_process(task, todo)
    # the runs found done count from the start, so the rate (and the ETA) is that of the runs that need work
    bar = tqdm(total=len(runs), initial=len(records), unit="run", desc=title, file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {n}/{total} runs trained and evaluated [{elapsed}<{remaining}] {postfix}")
    failures, lost = [], []
    try:
        for run, result, error in done:
            if isinstance(error, engine.WorkerLost):
                lost.append(run.run_id)
            elif error is not None:
                failures.append(f"{run.run_id}: {one_line(error)}")
            else:
                records[run] = result
            bar.set_postfix_str(f"{run.run_id} done")
            bar.update()
    finally:
        if hasattr(done, "close"):
            done.close()  # Ctrl-C here, between results: the engine stops its workers now, not at garbage collection
    bar.close()
    if lost:
        failures.append(f"{len(lost)} runs not finished ({', '.join(lost)}): a worker process died (killed, or out "
                        f"of memory) and took its pool down; the same command resumes them")
    if failures:
        raise RunFailed("\n".join(failures))
    return [records[r] for r in runs]

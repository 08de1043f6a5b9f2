"""What runs an experiment's tasks: this process, a pool of worker processes here (--jobs N), or a Dask cluster
(--scheduler tcp://HOST:PORT). A task is one run (train unless finished, evaluate unless cached, return its
record); the file cache is the source of truth, so a task run twice, or retried after its worker died, does no
harm: it finds its finished epochs and evaluation on disk and goes on from there.

Each engine yields (item, record, error) as tasks finish; error is an exception whose message is one line (the
task wrote any traceback to its run's log file, and the message names that file).
"""
import os
import signal
import sys
import threading
import time

from tqdm import tqdm


def in_this_process(task, items):
    for item in items:
        try:
            yield item, task(item), None
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 (the task's errors are reported per run)
            yield item, None, e


def _start_worker():
    """Each worker process: Ctrl-C is the main process's to handle (SIGINT is ignored from before the worker
    starts); SIGTERM stops the run as train.py does, keeping its last epoch; and a worker whose main process is
    gone (kill -9) stops too, instead of holding its run's lock."""
    from lab.training import stop_on_sigterm
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # each run writes its output to its own log file (runner.run_task); anything else would garble the main bar
    sys.stdout = sys.stderr = open(os.devnull, "w")
    tqdm.set_lock(threading.RLock())  # no lock shared between processes (a semaphore a stopped worker would leak)
    parent = os.getppid()

    def stop_when_orphaned():
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=stop_when_orphaned, daemon=True).start()


def _in_worker(task, item):
    """The task in a pool worker. A stopped run (SIGTERM: Ctrl-C in the main process, or its death) ends the
    worker once the run has cleaned up its files: the pool would otherwise start the next run it has queued."""
    try:
        return task(item)
    except KeyboardInterrupt:
        os._exit(143)


class WorkerLost(Exception):
    """A worker process died (killed, or out of memory) and took the pool down."""


def process_pool(task, items, jobs):
    """The tasks in `jobs` worker processes of this machine (spawned, not forked: a forked child of a process that
    has used PyTorch's thread pools can hang). Ctrl-C stops every worker's run; each keeps its last epoch."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker)
    try:
        # SIGINT is ignored while the workers start, which they inherit: Ctrl-C is the main process's to handle
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            futures = {pool.submit(_in_worker, task, item): item for item in items}
        finally:
            signal.signal(signal.SIGINT, interrupt)
        for future in as_completed(futures):
            try:
                yield futures[future], future.result(), None
            except BrokenProcessPool:
                yield futures[future], None, WorkerLost("a worker process died (killed, or out of memory)")
            except Exception as e:  # noqa: BLE001
                yield futures[future], None, e
    except (KeyboardInterrupt, GeneratorExit):
        for process in context.active_children():  # stop the workers' runs too; they keep their last epoch
            process.terminate()
        # not waiting for the pool's bookkeeping: the terminated workers end on their own within a second or two
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def dask_cluster(task, items, scheduler, key_of):
    """The tasks on the Dask cluster whose scheduler is at `scheduler` (tcp://HOST:PORT), as distributed futures.
    A worker that dies mid-run has its task rescheduled by Dask; the run resumes from its last saved epoch, as
    the checkpoints are on a filesystem every worker shares."""
    from distributed import Client
    from lab.files import UserError
    try:  # connected now, not when the first result is asked for: a wrong address is an error before any work
        client = Client(scheduler, set_as_default=False, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise UserError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e}); start one as "
                        f"docs/cluster.md shows") from None
    return _dask_results(client, task, items, key_of)


def _dask_results(client, task, items, key_of):
    from dask.base import tokenize
    from distributed import as_completed
    from lab.files import UserError
    with client:
        # the key names the run for Dask's dashboard, and its token the study's settings: two studies sharing a
        # scheduler never get each other's records
        token = tokenize(getattr(task, "keywords", None) or task)
        futures = {client.submit(task, item, key=f"{key_of(item)}-{tokenize(item, token)}", pure=False): item
                   for item in items}
        try:
            for future in as_completed(futures, loop=client.loop):
                item = futures[future]
                if future.status == "finished":
                    yield item, future.result(), None
                    continue
                error = future.exception() if future.status == "error" else None
                if error is None:  # cancelled, or lost with its scheduler
                    error = WorkerLost(f"its Dask task was {future.status}")
                elif "deserializ" in str(error):
                    error = UserError(f"the Dask scheduler or a worker cannot load this task ({str(error).splitlines()[0]}): "
                                      f"start them with this project importable, PYTHONPATH=<its folder> (docs/cluster.md)")
                yield item, None, error
        except (KeyboardInterrupt, GeneratorExit):
            client.cancel(list(futures))
            raise

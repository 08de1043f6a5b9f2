"""What does keeping the codes over training cost? (lab/training.py: CodeHistory and TensorBoard's scatter)

    python benchmarks/history_cost.py                 # the default AutoEncoder and VAE: ~1 min on 2 cores
    python benchmarks/history_cost.py --epochs 5

Times one epoch of train.py's loop for each default model without any history (median over its epochs), then
the two steps the history adds after each epoch, each over many calls: encoding the 2 000 validation images
(CodeHistory.add) and drawing TensorBoard's scatter (the figure and add_figure); prints each step's share of an
epoch.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data  # noqa: E402
import models  # noqa: E402
from lab import training  # noqa: E402


def epoch_seconds(kind, splits, epochs, folder):
    """The model trained for `epochs` without any history, and its median seconds per epoch (the first epoch, with
    its start-up, is not timed)."""
    run, = training.configs_of(training.parse_args([f"--train_{kind}", "--epochs", str(epochs), "--checkpoint_dir",
                                                    f"{folder}/ck", "--logdir", f"{folder}/logs"]))
    real_history, real_epoch, ends = training.CodeHistory, training.EpochLog.epoch, []

    def timed_epoch(self, epoch, *args, **kwargs):
        ends.append(time.perf_counter())
        return real_epoch(self, epoch, *args, **kwargs)
    try:
        training.CodeHistory, training.EpochLog.epoch = (lambda *a, **k: None), timed_epoch
        os.makedirs(run.checkpoint_dir, exist_ok=True)
        torch.manual_seed(0)
        model = models.build_model(kind)
        training.train_model(kind, model, splits, run, torch.device("cpu"), evaluate_test=False)
    finally:
        training.CodeHistory, training.EpochLog.epoch = real_history, real_epoch
    return model, statistics.median(b - a for a, b in zip(ends, ends[1:]))


def per_call(function, repeats):
    function()  # warm-up (the first matplotlib figure imports and caches fonts)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def main():
    from torch.utils.tensorboard import SummaryWriter
    from lab.figures import codes_figure
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="epochs of the timed run (the first is not timed)")
    p.add_argument("--repeats", type=int, default=20, help="calls timed of each of the history's two steps")
    args = p.parse_args()
    splits = data.load_dataset("mnist", os.path.join(ROOT, "data"))
    print(f"the default models on {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| model | one epoch, s | keeping the codes, s | TensorBoard's scatter, s | codes, share | both, share |")
    print("|---|---|---|---|---|---|")
    for kind in ("autoencoder", "vae"):
        with tempfile.TemporaryDirectory() as folder:
            model, epoch = epoch_seconds(kind, splits, args.epochs, folder)
            history = training.CodeHistory(model, splits["val"])
            codes = per_call(lambda: history.add(1), args.repeats)
            writer = SummaryWriter(f"{folder}/tb")
            labels = history.state["labels"].long()
            last = history.add(1)
            scatter = per_call(lambda: writer.add_figure("x", codes_figure(
                last, labels, kind, "epoch 1", history.box(), size=(4.4, 4.0), dpi=72), 1), args.repeats)
            writer.close()
        print(f"| {kind} | {epoch:.2f} | {codes:.3f} | {scatter:.3f} | {100 * codes / epoch:.1f} % | "
              f"{100 * (codes + scatter) / epoch:.1f} % |", flush=True)


if __name__ == "__main__":
    main()

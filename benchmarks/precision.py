"""What do bf16 training steps cost in quality, and what do they buy in time?

    python benchmarks/precision.py                   # the default VAE, seeds 0 1, 20 epochs: ~6 minutes on 2 cores
    python benchmarks/precision.py --seeds 0 1 2 --epochs 5
    python benchmarks/precision.py --device cuda --seeds 0 1 2   # on a GPU, where bf16 is native

Trains the default VAE (train.py's recipe) once per seed with --precision fp32 and once with bf16, the two
precisions alternating so that a drift of this (shared) machine's speed touches both, and prints per seed the
test -ELBO of each and the training seconds (train.py's own 'done in'), then the mean difference.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lab.cli import resolve_device  # noqa: E402
from lab.files import UserError  # noqa: E402


def train(precision, seed, epochs, folder, device):
    """(test -ELBO in nats, training seconds) of one run, read from train.py's summary lines."""
    result = subprocess.run([sys.executable, "train.py", "--train_vae", "--precision", precision, "--seed", str(seed),
                             "--device", device,
                             "--epochs", str(epochs), "--checkpoint_dir", os.path.join(folder, f"{precision}{seed}"),
                             "--logdir", os.path.join(folder, "logs")], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: train.py --precision {precision} --seed {seed} failed: {result.stderr.strip()[-300:]}")
    loss = float(re.search(r" test .*-ELBO ([0-9.]+)", result.stdout).group(1))  # "vae test  objective .., -ELBO .."
    seconds = float(re.search(r"done in ([0-9.]+)s", result.stdout).group(1))
    return loss, seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="train.py's --device (default: %(default)s)")
    args = p.parse_args()
    # what train.py's --device will pick (auto: CUDA, then MPS, then the CPU), to say where the timings come from
    try:
        device = resolve_device(argparse.Namespace(device=args.device, use_cuda=False))
    except UserError as e:
        p.exit(2, f"error: {e}\n")
    where = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    print(f"torch {torch.__version__}, {where} with {os.cpu_count()} CPU cores; default VAE, {args.epochs} epochs\n")
    print("| seed | test −ELBO fp32, nats | test −ELBO bf16, nats | bf16 − fp32, nats | training s fp32 | training s bf16 |")
    print("|---|---|---|---|---|---|", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i, seed in enumerate(args.seeds):
            order = ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")
            r = {precision: train(precision, seed, args.epochs, folder, args.device) for precision in order}
            rows.append((seed, r))
            # a row as soon as its seed is done: a run stopped by a time limit keeps what it measured
            print(f"| {seed} | {r['fp32'][0]:.2f} | {r['bf16'][0]:.2f} | {r['bf16'][0] - r['fp32'][0]:+.2f} | "
                  f"{r['fp32'][1]:.1f} | {r['bf16'][1]:.1f} |", flush=True)
    n = len(rows)
    cost = sum(r["bf16"][0] - r["fp32"][0] for _, r in rows) / n
    speed = sum(r["fp32"][1] for _, r in rows) / sum(r["bf16"][1] for _, r in rows)
    print(f"\nmean over {n} seeds: bf16 − fp32 = {cost:+.2f} nats; fp32 takes {speed:.2f}× the time of bf16")


if __name__ == "__main__":
    main()

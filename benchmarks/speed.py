"""How fast is training, and how close to the hardware? Prints one table.

    python benchmarks/speed.py              # about 3 minutes on a 2-core CPU
    python benchmarks/speed.py --skip_full_run

Rows, all measured in this run on this machine:
1. seed-style: the common tutorial loop -- torchvision MNIST through a DataLoader with ToTensor,
   batch 64, the seed's 784-200-200-2 LeakyReLU models, a `.item()` every batch, a validation pass --
   one epoch of AutoEncoder + VAE.
2. ours, same architecture: train.py's loop (tensors on the device, shuffled index slices), one epoch
   of AutoEncoder + VAE with the same 784-200-200-2 models, validation, TensorBoard and checkpoints.
3. ours, default: the README's command `train.py --train_autoencoder --train_vae --epochs=20` as a
   subprocess, start-up included.
Rows 1 and 2 use the same thread count (--threads, default 1), so their ratio isolates the loop.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402

SEED_ARCH = dict(hidden_dims=[200, 200], latent_dim=2, activation="leaky_relu")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seed_style_epoch(data_dir, device):
    """One epoch of AE + VAE the tutorial way; returns (seconds, training images per model)."""
    import torchvision
    from torch.utils.data import DataLoader, Subset
    data.prepare_mnist(data_dir)
    full = torchvision.datasets.MNIST(data_dir, train=True, transform=torchvision.transforms.ToTensor())
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(data.SPLIT_SEED))
    train_set, val_set = Subset(full, order[data.VALIDATION_SIZE:].tolist()), Subset(full, order[:data.VALIDATION_SIZE].tolist())
    start = time.perf_counter()
    for kind in ("autoencoder", "vae"):
        torch.manual_seed(0)
        model = models.build_model(kind, **SEED_ARCH).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for images, _ in DataLoader(train_set, batch_size=64, shuffle=True):
            loss = model.loss(images.to(device))["total"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # the usual per-batch logging read-back
        model.eval()
        with torch.no_grad():
            for images, _ in DataLoader(val_set, batch_size=64):
                model.loss(images.to(device))["total"].item()
    return time.perf_counter() - start, len(train_set)


def our_epoch(data_dir, device, batch_size):
    """One epoch of AE + VAE through train.py's own loop, same architecture as the seed."""
    with tempfile.TemporaryDirectory() as tmp:
        splits = data.load_mnist(data_dir, device)
        argv = ["--train_autoencoder", "--train_vae", "--epochs", "1", "--batch_size", str(batch_size),
                "--hidden_dims", *map(str, SEED_ARCH["hidden_dims"]), "--activation", SEED_ARCH["activation"],
                "--checkpoint_dir", f"{tmp}/ck", "--logdir", f"{tmp}/logs", "--data_dir", data_dir]
        args = train.parse_args(argv + (["--use_cuda"] if device.type == "cuda" else []))
        os.makedirs(args.checkpoint_dir)
        start = time.perf_counter()
        for kind in ("autoencoder", "vae"):
            torch.manual_seed(0)
            model = models.build_model(kind, **SEED_ARCH).to(device)
            train.train_model(kind, model, splits, args, device, evaluate_test=False)
        return time.perf_counter() - start, len(splits["train"])


def full_default_run(use_cuda):
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, os.path.join(ROOT, "train.py"), "--train_autoencoder", "--train_vae", "--epochs=20",
                   "--checkpoint_dir", f"{tmp}/ck", "--logdir", f"{tmp}/logs", "--data_dir", os.path.join(ROOT, "data")]
        start = time.perf_counter()
        result = subprocess.run(command + (["--use_cuda"] if use_cuda else []), capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"error: the default run failed:\n{result.stderr[-2000:]}")
        tests = [line for line in result.stdout.splitlines() if " test " in line]
        return seconds, tests


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="threads for rows 1 and 2 (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=256, help="our loop's batch size in row 2 (default: %(default)s)")
    p.add_argument("--use_cuda", action="store_true", help="run every row on the GPU")
    p.add_argument("--skip_full_run", action="store_true", help="leave out row 3 (the 20-epoch default run)")
    args = p.parse_args()
    device = torch.device("cuda" if args.use_cuda else "cpu")
    data_dir = os.path.join(ROOT, "data")
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)

    seed_seconds, n = seed_style_epoch(data_dir, device)
    our_seconds, _ = our_epoch(data_dir, device, args.batch_size)
    torch.set_num_threads(default_threads)

    macs = models.count_macs_per_image(models.build_model("vae", **SEED_ARCH))
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
          + f", threads for rows 1-2: {args.threads}\n")
    print("| variant | s per epoch (AE + VAE) | training images/s | speed-up |")
    print("|---|---|---|---|")
    print(f"| seed-style DataLoader + ToTensor, batch 64, 784-200-200-2 | {seed_seconds:.1f} | {2 * n / seed_seconds:,.0f} | 1.0× |")
    print(f"| ours, tensor batches, batch {args.batch_size}, 784-200-200-2 | {our_seconds:.1f} | {2 * n / our_seconds:,.0f} "
          f"| {seed_seconds / our_seconds:.1f}× |")
    print(f"\n(784-200-200-2 costs {6 * macs / 1e6:.2f} MFLOP per image per training step, forward and backward.)")

    if not args.skip_full_run:
        seconds, tests = full_default_run(args.use_cuda)
        default = models.build_model("vae", hidden_dims=[256, 256, 256])
        flops = 6 * models.count_macs_per_image(default) * n * 20 * 2
        print(f"\nthe README's default run (`train.py --train_autoencoder --train_vae --epochs=20`, {default_threads} threads): "
              f"{seconds:.1f} s from start to finish, {2 * 20 * n / seconds:,.0f} training images/s;")
        print(f"its training steps need {flops / 1e12:.1f} TFLOP ({6 * models.count_macs_per_image(default) / 1e6:.1f} MFLOP "
              f"per image), i.e. {flops / seconds / 1e9:.0f} GFLOP/s over the whole run "
              f"(floor to reason from: ~40 GFLOP/s per thread, {40 * default_threads} for {default_threads} threads)")
        for line in tests:
            print("  " + line)


if __name__ == "__main__":
    main()

"""What does `train.py --compile` cost per run, the first time on a machine and every time after?

    python benchmarks/compile_cache.py          # about 2 minutes on 2 CPU cores

torch.compile keeps what it compiled on disk (Inductor's FX graph cache and AOTAutograd's cache, under
TORCHINDUCTOR_CACHE_DIR), so a later process compiling the same graphs may load them instead. This times the
same short run (the default VAE, --epochs, the first --max_train_images images) as separate processes:
eager; compiled with an empty cache folder (the first run on a machine); and compiled again with the folder
the first one filled (every later run, e.g. each of a study's runs). Each process's wall time includes its
start-up, so the differences are what compiling costs a run.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_run(args, tmp, cache_dir, compile):
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--train_vae", "--epochs", str(args.epochs),
               "--max_train_images", str(args.max_train_images), "--checkpoint_dir", os.path.join(tmp, "ck"),
               "--logdir", os.path.join(tmp, "logs"), "--data_dir", os.path.join(ROOT, "data")]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    started = time.perf_counter()
    result = subprocess.run(command + (["--compile"] if compile else []), env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return time.perf_counter() - started


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="epochs of each run (default: %(default)s)")
    p.add_argument("--max_train_images", type=int, default=20000, help="training images (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="timings of each kind, the minimum shown (default: %(default)s)")
    args = p.parse_args()
    import torch
    rows = {"eager": [], "compiled, empty cache (first run on a machine)": [],
            "compiled, cache filled by an earlier run": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            cache = os.path.join(tmp, f"inductor-cache-{repeat}")  # a fresh, empty folder each repeat
            rows["eager"].append(timed_run(args, tmp, cache, compile=False))
            rows["compiled, empty cache (first run on a machine)"].append(timed_run(args, tmp, cache, compile=True))
            rows["compiled, cache filled by an earlier run"].append(timed_run(args, tmp, cache, compile=True))
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPUs; the default VAE, {args.epochs} epochs on "
          f"{args.max_train_images} images, one process each, minimum of {args.repeats}\n")
    print("| run | wall s | more than eager |")
    print("|---|---|---|")
    eager = min(rows["eager"])
    for name, seconds in rows.items():
        print(f"| {name} | {min(seconds):.1f} | {min(seconds) - eager:+.1f} s |")


if __name__ == "__main__":
    main()

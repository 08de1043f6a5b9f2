"""Is it faster to run a study's runs one at a time on every core, or several at once on a core each?

    python benchmarks/parallel_runs.py            # about 4 minutes on 2 CPU cores

Times the two stages of one run of the study, training (train.py, the default recipe for a few epochs) and
evaluation (evaluate.py on the committed VAE, the study's heaviest stage), each as (a) one process with all
the cores' threads and (b) as many processes as cores side by side, one thread each; then prints the
throughput of each in runs per minute. study.py's --jobs default is the faster (lab/runner.py, DEFAULT_JOBS).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def side_by_side(commands, threads):
    """Start every command at once with `threads` threads each; the wall seconds until the last one ends."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    processes = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]
    for p in processes:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"error: {' '.join(p.args)} failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    return time.perf_counter() - started


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs of each timed training run (default: %(default)s)")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="processes side by side (default: every core)")
    args = p.parse_args()
    cores = args.cores
    with tempfile.TemporaryDirectory() as tmp:
        def train(i):
            return [sys.executable, "train.py", "--train_vae", "--epochs", str(args.epochs), "--seed", str(i),
                    "--checkpoint_dir", os.path.join(tmp, f"ck{i}"), "--logdir", os.path.join(tmp, "logs")]

        def evaluate(i):
            return [sys.executable, "evaluate.py", "checkpoints/vae.pt", "-o", os.path.join(tmp, f"eval{i}")]
        rows = []
        for stage, command in (("train", train), ("evaluate", evaluate)):
            one = side_by_side([command(0)], threads=cores)
            many = side_by_side([command(i) for i in range(cores)], threads=1)
            rows.append((stage, one, many))
    print(f"| stage (one run of the study) | 1 run × {cores} threads: s | {cores} runs × 1 thread: s | "
          f"runs/min, 1 × {cores} | runs/min, {cores} × 1 | faster |")
    print("|---|---|---|---|---|---|")
    for stage, one, many in rows:
        print(f"| {stage} | {one:.1f} | {many:.1f} | {60 / one:.2f} | {60 * cores / many:.2f} | "
              f"{'side by side' if many / cores < one else 'one at a time'} ({max(one * cores / many, many / cores / one):.2f}×) |")
    print(f"\n(training: {args.epochs} epochs of the default VAE; evaluation: evaluate.py on checkpoints/vae.pt, "
          f"IWAE k = 1000 on 10 000 test images; {os.cpu_count()} CPUs here)")


if __name__ == "__main__":
    main()

"""How long does the study take to evaluate one run, on all the cores and on one (a `--jobs 2` worker's share)?

    python benchmarks/evaluate_run.py             # about 4 minutes on 2 CPU cores
    python benchmarks/evaluate_run.py --device cuda --threads 16

Times lab/seed_study.py's evaluate_run -- everything the study measures for one run: evaluate.py's measures,
the VAE's -ELBO, IWAE bound and -log p(x) by quadrature on all 10 000 test images, the grid over its own codes,
and three samplers x 10 000 decoded samples scored by Frechet distance, density, coverage and the judge -- on
the committed default models (checkpoints/autoencoder.pt and vae.pt), with the study's default settings, once
with every core's threads and once with one thread. The judge and the test images' features are prepared
once beforehand, as each study worker does once per dataset. Nothing is written.
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import data  # noqa: E402
import models  # noqa: E402
from lab import cli, seed_study  # noqa: E402
from lab.config import StudyConfig  # noqa: E402
from lab.files import UserError  # noqa: E402
from speed import synchronize  # noqa: E402  (benchmarks/speed.py, beside this file)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count(), 1],
                   help="thread counts to time, in this order (default: every core, then 1)")
    p.add_argument("--repeats", type=int, default=1, help="timings per model and thread count; the minimum is "
                                                          "printed (default: %(default)s)")
    cli.add_device_arguments(p)
    options = p.parse_args()
    try:
        device = cli.resolve_device(options)
    except UserError as e:
        p.exit(2, f"error: {e}\n")
    # the study's defaults (study.py: --num_samples 10000, --iwae_draws 20, --iwae_images 10000)
    args = StudyConfig(data_dir=os.path.join(ROOT, "data"), checkpoint_dir=os.path.join(ROOT, "checkpoints"),
                       device=str(device), evaluation=seed_study.EVALUATION)
    splits = data.load_dataset("mnist", args.data_dir, device)
    reference = seed_study.prepare("mnist", args)
    checkpoints = {"AutoEncoder": "autoencoder.pt", "VAE": "vae.pt"}
    where = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    print(f"evaluate_run on the committed default models, on {where} with {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}")
    print("| evaluation of one run | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in options.threads) + " |")
    print("|---|" + "---|" * len(options.threads))
    for label, name in checkpoints.items():
        model = models.load_checkpoint(os.path.join(ROOT, "checkpoints", name), map_location=device)
        cells = []
        for threads in options.threads:
            torch.set_num_threads(threads)
            times = []
            for _ in range(options.repeats):
                started = time.perf_counter()
                seed_study.evaluate_run(model, splits, reference, args)
                synchronize(device)
                times.append(time.perf_counter() - started)
            cells.append(f"{min(times):.1f} s")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

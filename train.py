"""Train a 2-D AutoEncoder and/or VAE(s) on MNIST (or Fashion-MNIST), with TensorBoard logs and checkpoints.

    python train.py --train_autoencoder --train_vae --epochs=20 [--device cuda|mps|cpu]

Writes checkpoints/autoencoder.pt and checkpoints/vae.pt (one vae_beta<B>.pt per other --beta),
and one TensorBoard run per model under logs/ (`tensorboard --logdir=logs`). The flags and the loop are in
lab/training.py; `python train.py -h` explains every flag.
"""
import signal
import sys
import time

import torch

import data
from lab import cli, training
from lab.files import writable_dir
from lab.training import parse_args  # the recipe's flags and defaults; the study's runner uses them too


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, training.stop_on_sigterm)
    try:
        with cli.errors_as_one_line():
            device = cli.resolve_device(args)
            if args.threads:
                torch.set_num_threads(args.threads)
            splits = data.load_dataset(args.dataset, args.data_dir, device, args.max_train_images, args.image_size)
            writable_dir(args.checkpoint_dir)  # after the data: bad data leaves no folders behind
            writable_dir(args.logdir)
            started = time.perf_counter()
            for run in training.configs_of(args):  # one TrainConfig per model asked for
                training.train_one(run, splits, device, resume=args.resume)
            print(f"done in {time.perf_counter() - started:.1f}s")
    except KeyboardInterrupt as stop:
        saved = getattr(stop, "saved", None)  # training.RunStopped: the run's last completed epoch
        where = (f"the last completed epoch ({saved[1]}) is saved in {saved[0]}; "
                 f"continue with the same command and --resume") if saved else "no epoch was completed"
        print(f"\n{stop.args[0] if stop.args else 'interrupted'}: {where}", file=sys.stderr)
        sys.exit(143 if stop.args and stop.args[0] == "terminated" else 130)


if __name__ == "__main__":
    main()

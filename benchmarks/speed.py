"""How fast is training, and how close to the hardware? Prints one table.

    python benchmarks/speed.py              # about 6 minutes on a 2-core CPU
    python benchmarks/speed.py --skip_full_run --with_compile    # 4.6 minutes there, with Pythae's row
    python benchmarks/speed.py --use_cuda --with_compile   # on a GPU: eager and compiled default runs

Rows, all measured in this run on this machine:
1. original-project style: the common tutorial loop -- torchvision MNIST through a DataLoader with ToTensor,
   batch 64, the original project's 784-200-200-2 LeakyReLU models, a `.item()` every batch, a validation pass --
   one epoch of AutoEncoder + VAE.
2. ours, same architecture: train.py's loop (tensors on the device, shuffled index slices), one epoch
   of AutoEncoder + VAE with the same 784-200-200-2 models, validation, TensorBoard and checkpoints: once at
   batch 64, the tutorial's, so that rows 1 and 2a differ by the loop alone, and once at this project's
   batch 256, so that rows 2a and 2b differ by the batch size alone.
   A peer, side by side: the default VAE (784-256-256-256-2, GELU, batch 256, Adam, a validation pass per
   epoch) trained by train.py's loop and by Pythae's TrainingPipeline (pythae 0.1.2, Chadebec et al. 2022),
   in --peer_pairs alternating pairs of --peer_epochs epochs each: single runs on a shared machine vary by
   tens of percent, so the table gives the minimum and the median of each. Pythae is optional (the row says
   when it is missing); install it away from this project's environment, e.g.
   `pip install --target /tmp/pythae --no-deps pythae==0.1.2 cloudpickle imageio pydantic` and
   `PYTHONPATH=/tmp/pythae`, as its `dataclasses` requirement puts a Python 3.6 backport over the standard library.
3. ours, default: the README's command `train.py --train_autoencoder --train_vae --epochs=20` as a
   subprocess, start-up included (and, with --with_compile, the same command with --compile).
Rows 1 and 2 use the same thread count (--threads, default 1).
The default run's arithmetic is then compared with the float32 matrix-multiply rate measured on the
same device: the peak (large square matrices) and at the model's own layer shapes.
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
from lab import training  # noqa: E402

ORIGINAL_ARCH = dict(hidden_dims=[200, 200], latent_dim=2, activation="leaky_relu")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def original_style_epoch(data_dir, device):
    """One epoch of AE + VAE the tutorial way; returns (seconds, training images per model)."""
    import torchvision
    from torch.utils.data import DataLoader, Subset
    data.prepare_dataset(data_dir, "mnist")
    full = torchvision.datasets.MNIST(data_dir, train=True, transform=torchvision.transforms.ToTensor())
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(data.SPLIT_SEED))
    train_set, val_set = Subset(full, order[data.VALIDATION_SIZE:].tolist()), Subset(full, order[:data.VALIDATION_SIZE].tolist())
    start = time.perf_counter()
    for kind in ("autoencoder", "vae"):
        torch.manual_seed(0)
        model = models.build_model(kind, **ORIGINAL_ARCH).to(device)
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
    """One epoch of AE + VAE through train.py's own loop, same architecture as the original project."""
    with tempfile.TemporaryDirectory() as tmp:
        splits = data.load_dataset("mnist", data_dir, device)
        argv = ["--train_autoencoder", "--train_vae", "--epochs", "1", "--batch_size", str(batch_size),
                "--hidden_dims", *map(str, ORIGINAL_ARCH["hidden_dims"]), "--activation", ORIGINAL_ARCH["activation"],
                "--checkpoint_dir", f"{tmp}/ck", "--logdir", f"{tmp}/logs", "--data_dir", data_dir]
        runs = training.configs_of(training.parse_args(argv))
        os.makedirs(runs[0].checkpoint_dir)
        start = time.perf_counter()
        for run in runs:
            torch.manual_seed(0)
            model = models.build_model(run.kind, **ORIGINAL_ARCH).to(device)
            training.train_model(run.kind, model, splits, run, device, evaluate_test=False)
        return time.perf_counter() - start, len(splits["train"])


def our_vae_seconds(data_dir, device, epochs):
    """Wall seconds of train.py's loop training the default VAE for `epochs` (validation, TensorBoard and a
    checkpoint every epoch included)."""
    with tempfile.TemporaryDirectory() as tmp:
        splits = data.load_dataset("mnist", data_dir, device)
        run, = training.configs_of(training.parse_args(["--train_vae", "--epochs", str(epochs), "--checkpoint_dir",
                                                         f"{tmp}/ck", "--logdir", f"{tmp}/logs", "--data_dir", data_dir]))
        os.makedirs(run.checkpoint_dir)
        start = time.perf_counter()
        torch.manual_seed(0)
        training.train_model("vae", models.build_model("vae").to(device), splits, run, device, evaluate_test=False)
        return time.perf_counter() - start


def pythae_vae_seconds(data_dir, device, epochs):
    """Wall seconds of Pythae's TrainingPipeline training the same VAE (same layers, batch 256, Adam at train.py's
    learning rate, Bernoulli cross-entropy, a validation pass every epoch) for `epochs`; None without pythae."""
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
    except ImportError:
        return None
    import contextlib
    import io
    import logging
    default = models.build_model("vae")

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = models.mlp([784, *default.model_args["hidden_dims"], 2 * default.latent_dim], "gelu")

        def forward(self, x):
            mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = models.mlp([default.latent_dim, *reversed(default.model_args["hidden_dims"]), 784], "gelu")

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, *models.IMAGE_SHAPE))

    splits = data.load_dataset("mnist", data_dir, device)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):  # its progress bars and log lines
        torch.manual_seed(0)
        model = VAE(VAEConfig(input_dim=models.IMAGE_SHAPE, latent_dim=default.latent_dim, reconstruction_loss="bce"),
                    encoder=Encoder(), decoder=Decoder())
        config = BaseTrainerConfig(output_dir=tmp, num_epochs=epochs, learning_rate=training.parse_args(["--train_vae"]).lr,
                                   per_device_train_batch_size=256, per_device_eval_batch_size=256,
                                   no_cuda=device.type != "cuda")
        logging.disable(logging.INFO)  # its loggers print to the stderr of import time
        try:
            start = time.perf_counter()
            TrainingPipeline(model=model, training_config=config)(train_data=splits["train"].images.cpu(),
                                                                  eval_data=splits["val"].images.cpu())
            return time.perf_counter() - start
        finally:
            logging.disable(logging.NOTSET)


def synchronize(device):
    """A GPU's work is asynchronous: wait for it before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def milliseconds(run, device, repeats=100, warmup=20):
    """Mean time of one call of run(), after a warm-up (allocator, thread pool, kernels)."""
    for _ in range(warmup):
        run()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronize(device)
    return (time.perf_counter() - start) / repeats * 1000


def matmul_gflops(device, m, k, n):
    """float32 rate of (m x k) @ (k x n) on device, in GFLOP/s."""
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    return 2 * m * k * n / milliseconds(lambda: a @ b, device, repeats=20, warmup=3) / 1e6


def training_matmuls(model, batch_size):
    """The (m, k, n) shapes of the matrix multiplies in one training step: per layer, the forward
    product and, backwards, the weight gradient and the input gradient -- except for the first
    layer, whose input (the images) needs no gradient, so autograd skips it."""
    shapes = []
    for i, layer in enumerate(m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        d_in, d_out = layer.in_features, layer.out_features
        shapes += [(batch_size, d_in, d_out), (d_out, batch_size, d_in)]
        if i > 0:
            shapes.append((batch_size, d_out, d_in))
    return shapes


def training_flops_per_image(model):
    return sum(2 * m * k * n for m, k, n in training_matmuls(model, 1))


def step_breakdown(device, batch_size, with_compile, steps=100):
    """One training step of the default VAE, in ms: {"eager": .., "--compile": .. (if asked),
    "matrix multiplies alone": ..} -- the last being the step's matrix multiplies timed on their own."""
    torch.manual_seed(0)
    model = models.build_model("vae", hidden_dims=[256, 256, 256]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    images = torch.rand(batch_size, 1, 28, 28, device=device)
    operands = [(torch.randn(m, k, device=device), torch.randn(k, n, device=device))
                for m, k, n in training_matmuls(model, batch_size)]

    def step_with(loss_fn, max_grad_norm=0):
        def step():
            loss = loss_fn(images)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm:  # what train.py does every step (--max_grad_norm, default 1e4)
                training.clip_gradients(model, max_grad_norm, device)
            optimizer.step()
        return step

    def matmuls():
        for a, b in operands:
            a @ b

    # clipping's cost is a few per cent at most, below this shared machine's drift between two timings: so the
    # two steps alternate, seven times each, and the medians are compared
    plain, clipped = [], []
    for _ in range(7):
        plain.append(milliseconds(step_with(model.loss), device, steps // 2, warmup=5))
        clipped.append(milliseconds(step_with(model.loss, 1e4), device, steps // 2, warmup=5))
    timings = {"eager": sorted(plain)[3], "eager, clipping": sorted(clipped)[3]}
    if with_compile:  # compiled here, before the timing
        timings["--compile"] = milliseconds(step_with(training.compile_loss(model, images)), device, steps)
    timings["matrix multiplies alone"] = milliseconds(matmuls, device, steps)
    return timings


def full_default_run(use_cuda, compile=False):
    """The README's default command as a subprocess: (wall seconds, train.py's own 'done in' seconds, test lines)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, os.path.join(ROOT, "train.py"), "--train_autoencoder", "--train_vae", "--epochs=20",
                   "--checkpoint_dir", f"{tmp}/ck", "--logdir", f"{tmp}/logs", "--data_dir", os.path.join(ROOT, "data")]
        start = time.perf_counter()
        result = subprocess.run(command + (["--use_cuda"] if use_cuda else []) + (["--compile"] if compile else []),
                                capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"error: the default run failed:\n{result.stderr[-2000:]}")
        lines = result.stdout.splitlines()
        # "done in": from the data on the device to the last checkpoint, i.e. start-up and data loading left out
        training = float(next(line for line in lines if line.startswith("done in")).split()[2].rstrip("s"))
        return seconds, training, [line for line in lines if " test " in line]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="threads for rows 1 and 2 (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=256, help="our loop's batch size in row 2 (default: %(default)s)")
    p.add_argument("--use_cuda", action="store_true", help="run every row on the GPU")
    p.add_argument("--skip_full_run", action="store_true", help="leave out the 20-epoch default run(s)")
    p.add_argument("--peer_pairs", type=int, default=3,
                   help="alternating pairs of our loop and Pythae's TrainingPipeline; 0 leaves the peer out (default: %(default)s)")
    p.add_argument("--peer_epochs", type=int, default=2, help="epochs of each run of a pair (default: %(default)s)")
    p.add_argument("--with_compile", action="store_true",
                   help="also time the default run with train.py --compile (one more full run)")
    args = p.parse_args()
    device = torch.device("cuda" if args.use_cuda else "cpu")
    data_dir = os.path.join(ROOT, "data")
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)

    original_seconds, n = original_style_epoch(data_dir, device)
    our_seconds_64, _ = our_epoch(data_dir, device, 64)
    our_seconds, _ = our_epoch(data_dir, device, args.batch_size)
    peer = {"ours": [], "pythae": []}
    for _ in range(args.peer_pairs):
        peer["ours"].append(our_vae_seconds(data_dir, device, args.peer_epochs) / args.peer_epochs)
        seconds = pythae_vae_seconds(data_dir, device, args.peer_epochs)
        if seconds is None:
            break
        peer["pythae"].append(seconds / args.peer_epochs)
    torch.set_num_threads(default_threads)

    original_flops = training_flops_per_image(models.build_model("vae", **ORIGINAL_ARCH))
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
          + f", threads for rows 1-2: {args.threads}\n")
    print("| variant | s per epoch (AE + VAE) | training images/s | speed-up |")
    print("|---|---|---|---|")
    print(f"| 1. original-project style DataLoader + ToTensor, batch 64, 784-200-200-2 | {original_seconds:.1f} | {2 * n / original_seconds:,.0f} | 1.0× |")
    print(f"| 2a. ours, tensor batches, batch 64 (the loop alone), 784-200-200-2 | {our_seconds_64:.1f} | "
          f"{2 * n / our_seconds_64:,.0f} | {original_seconds / our_seconds_64:.1f}× |")
    print(f"| 2b. ours, tensor batches, batch {args.batch_size} (and the batch size), 784-200-200-2 | {our_seconds:.1f} | "
          f"{2 * n / our_seconds:,.0f} | {original_seconds / our_seconds:.1f}× |")
    if args.peer_pairs:
        print(f"\n| the default VAE (784-256-256-256-2, GELU, batch 256, Adam), {args.threads} thread(s) | "
              f"s per epoch, min of {len(peer['ours'])} | median | min, ours ahead by |")
        print("|---|---|---|---|")
        ours = sorted(peer["ours"])
        print(f"| ours, train.py's loop | {ours[0]:.2f} | {ours[len(ours) // 2]:.2f} | |")
        if peer["pythae"]:
            theirs = sorted(peer["pythae"])
            from importlib.metadata import version
            print(f"| Pythae {version('pythae')} TrainingPipeline | {theirs[0]:.2f} | "
                  f"{theirs[len(theirs) // 2]:.2f} | {theirs[0] / ours[0]:.2f}× |")
        else:
            print("| Pythae TrainingPipeline | not installed (see this script's docstring) | | |")
    print(f"\n(784-200-200-2 costs {original_flops / 1e6:.2f} MFLOP per image per training step, forward and backward.)")

    default = models.build_model("vae", hidden_dims=[256, 256, 256])
    flops_per_image = training_flops_per_image(default)
    flops = flops_per_image * n * 20 * 2
    peak = matmul_gflops(device, *((8192,) * 3 if device.type == "cuda" else (2048,) * 3))
    at_layer_shape = matmul_gflops(device, args.batch_size, 784, 256)
    print(f"\nfloat32 matrix multiply on {device} ({default_threads} threads on the CPU): peak {peak:,.0f} GFLOP/s "
          f"(square {8192 if device.type == 'cuda' else 2048}), {at_layer_shape:,.0f} GFLOP/s at the first layer's shape "
          f"({args.batch_size} x 784 @ 784 x 256)")
    print(f"the default model: {flops_per_image / 1e6:.1f} MFLOP per image per training step; "
          f"20 epochs x 2 models = {flops / 1e12:.1f} TFLOP")
    timings = step_breakdown(device, args.batch_size, args.with_compile)
    step_flops = flops_per_image * args.batch_size
    step_ms, matmul_ms = timings["eager"], timings["matrix multiplies alone"]
    print(f"--max_grad_norm (one gradient norm per step, train.py's default): {timings['eager, clipping']:.2f} ms "
          f"against {step_ms:.2f} ms without (medians of 7 alternating timings), "
          f"{100 * (timings['eager, clipping'] / step_ms - 1):+.1f} %")
    print(f"one training step of the default VAE, batch {args.batch_size}: {step_ms:.2f} ms "
          + (f"({timings['--compile']:.2f} ms with --compile, compiling not counted)" if args.with_compile else "")
          + f"; its matrix multiplies, timed alone, {matmul_ms:.2f} ms ({step_flops / matmul_ms / 1e6:,.0f} GFLOP/s, "
          f"{100 * step_flops / matmul_ms / 1e6 / peak:.0f} % of the peak), i.e. {100 * matmul_ms / step_ms:.0f} % of the step; "
          f"the rest is activations, loss, Adam and autograd bookkeeping; the step as a whole runs at "
          f"{step_flops / step_ms / 1e6:,.0f} GFLOP/s")
    if args.skip_full_run:
        return
    print()
    print("| the README's default run (20 epochs x 2 models) | wall s, start-up included | training s | "
          "training images/s | GFLOP/s | of the matmul peak |")
    print("|---|---|---|---|---|---|")
    test_lines = []
    for compile in ([False, True] if args.with_compile else [False]):
        seconds, training, tests = full_default_run(args.use_cuda, compile)
        test_lines += [f"{'--compile' if compile else 'eager'}: {line}" for line in tests]
        print(f"| {'--compile' if compile else 'eager'}, {default_threads} threads{', ' + str(device) if device.type == 'cuda' else ''} "
              f"| {seconds:.1f} | {training:.1f} | {2 * 20 * n / training:,.0f} | {flops / training / 1e9:,.0f} "
              f"| {100 * flops / training / 1e9 / peak:.1f} % |", flush=True)
    print("\nquality (the test set):")
    for line in test_lines:
        print("  " + line)


if __name__ == "__main__":
    main()

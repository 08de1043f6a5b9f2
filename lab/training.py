"""The training loop: one model, checkpointed after every epoch, resumable bit for bit on the CPU.

train.py calls train_one for each model the command line asks for; the study's runner (runner.py) too.
"""
import argparse
import math
import os
import sys
import time

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import data
import models
from lab import cli, measures
from lab.files import UserError, WriterLock
from lab.run_log import log_hparams, make_log_dir


def parse_args(argv=None):
    p = cli.ArgumentParser(
        prog="train.py",
        description="Train a 2-D AutoEncoder and/or VAE(s) on MNIST (or Fashion-MNIST). Each model gets a checkpoint "
                    "(<checkpoint_dir>/<name>.pt, rewritten after every epoch with the optimizer state; the finished "
                    "run's file keeps weights, configuration and metrics only) and a TensorBoard run "
                    "(<logdir>/<name>-<date>-<time>). An existing checkpoint of the same name is moved "
                    "to <checkpoint_dir>/previous/ before it is replaced, so no run is lost.")
    g = p.add_argument_group("what to train (at least one)")
    g.add_argument("--train_autoencoder", action="store_true", help="train the AutoEncoder -> autoencoder.pt")
    g.add_argument("--train_vae", action="store_true",
                   help="train one VAE per --beta value -> vae.pt (beta 1), vae_beta<B>.pt (others)")
    g = p.add_argument_group("model")
    g.add_argument("--latent_dim", type=cli.positive_int, default=2,
                   help="size of the latent code (default: %(default)s; the figures need 2)")
    g.add_argument("--hidden_dims", "--hidden_dim", type=cli.positive_int, nargs="+", default=[256, 256, 256],
                   metavar="N", help="hidden layer sizes of the encoder; the decoder mirrors them "
                                     "(default: %(default)s)")
    g.add_argument("--activation", choices=sorted(models.ACTIVATIONS), default="gelu",
                   help="nonlinearity between layers (default: %(default)s)")
    g.add_argument("--beta", type=cli.non_negative_float, nargs="+", default=[1.0], metavar="B",
                   help="weight of the VAE's KL term; several values train one VAE each "
                        "(default: 1, the plain ELBO)")
    g.add_argument("--iwae_k", type=cli.positive_int, default=1, metavar="K",
                   help="train the VAE on the importance-weighted bound with K samples per image (Burda et al. "
                        "2016); 1 is the plain ELBO. Costs about K times the decoder's work; beta must be 1 "
                        "(default: %(default)s)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=cli.positive_int, default=20, help="passes over the 55 000 training "
                   "images (default: %(default)s)")
    g.add_argument("--batch_size", type=cli.positive_int, default=256,
                   help="images per step; 256 keeps a CPU's matrix units busier than 64 or 128 and, with the "
                        "peak --lr of 3e-3, loses no quality in 20 epochs (default: %(default)s)")
    g.add_argument("--lr", type=cli.positive_float, default=3e-3,
                   help="peak learning rate of Adam (default: %(default)s)")
    g.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine: linear warm-up over the first epoch, then cosine decay to zero; "
                        "constant: --lr throughout (default: %(default)s)")
    g.add_argument("--max_grad_norm", type=cli.non_negative_float, default=1e4, metavar="N",
                   help="clip the gradient's total norm to N; 0: never. A run's norms stay below ~700, so this only "
                        "acts on a rare batch whose VAE log-variance blows up (a loss of 1e10 and more), which would "
                        "otherwise swell Adam's step statistics and stall the rest of the run; a run it never acts on "
                        "is bit for bit the same (default: %(default)g)")
    g.add_argument("--seed", type=cli.non_negative_int, default=0,
                   help="seed of weights, batch order and sampling (default: %(default)s)")
    g = p.add_argument_group("files and hardware")
    g.add_argument("--dataset", type=cli.dataset_argument, default="mnist", metavar="{mnist,binarized-mnist,fashion-mnist,PATH}",
                   help="mnist (bundled); binarized-mnist (the same images with every pixel sampled to 0 or 1 "
                        "with its grey level as probability: afresh for each training batch, once with a fixed seed "
                        "for validation and test -- the form papers report likelihoods in); fashion-mnist (from "
                        "Debian's dataset-fashion-mnist, else --data_dir, else downloaded); or " + cli.DATASET_HELP +
                        ", split 80/10/10 into train/validation/test by a fixed seed. Checkpoints of other "
                        "datasets than mnist are named <dataset>_<model>.pt (default: %(default)s)")
    g.add_argument("--image_size", type=cli.positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="resize a PATH dataset's images to H x W (needed when their sizes differ; default: as they are)")
    g.add_argument("--data_dir", default="data", help="folder holding <dataset>/raw/ (default: %(default)s)")
    g.add_argument("--checkpoint_dir", default="checkpoints", help="where checkpoints go (default: %(default)s)")
    g.add_argument("--name", default=None,
                   help="file stem of the checkpoint and TensorBoard run, for one model only (default: autoencoder, "
                        "vae, vae_beta<B>, prefixed with <dataset>_ unless mnist)")
    g.add_argument("--logdir", default="logs", help="where TensorBoard runs go (default: %(default)s)")
    cli.add_device_arguments(g)
    g.add_argument("--threads", type=cli.positive_int, default=None,
                   help="CPU threads for PyTorch (default: PyTorch's choice, one per physical core)")
    g.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: the training steps' matrix products in bfloat16 (autocast; weights, optimizer, "
                        "validation and test stay float32), faster where the processor multiplies bf16 natively; "
                        "its cost in nats is in docs/speed.md. The committed results use fp32 (default: %(default)s)")
    g.add_argument("--compile", action="store_true",
                   help="compile the loss and its gradient with torch.compile (needs a C++ compiler on the CPU). "
                        "Off by default: on a 2-core CPU steps get ~7 %% faster, but compiling costs more than the "
                        "20-epoch default run gains (it ended 10-30 s later); see docs/speed.md")
    g.add_argument("--resume", action="store_true",
                   help="continue each named model's unfinished run from its checkpoint (weights, optimizer, "
                        "schedule, epoch, random state) with the settings stored there; model and optimisation "
                        "flags are then ignored. On the CPU the result equals an uninterrupted run bit for bit")
    g.add_argument("--max_train_images", type=cli.positive_int, default=None, metavar="N",
                   help="train on the first N training images only, for a quick look (default: all 55 000)")
    args = p.parse_args(argv)
    if args.image_size and args.dataset in data.DATASETS:
        p.error(f"--image_size resizes your own images (--dataset PATH); {args.dataset}'s are 28 x 28")
    if not (args.train_autoencoder or args.train_vae):
        p.error("nothing to train: give --train_autoencoder and/or --train_vae")
    if args.iwae_k > 1 and (args.beta != [1.0] or not args.train_vae):
        p.error("--iwae_k is the VAE's objective with beta 1: give --train_vae without other --beta values")
    if args.name is not None:
        if int(args.train_autoencoder) + (len(args.beta) if args.train_vae else 0) != 1:
            p.error("--name names one model: train either the AutoEncoder or one VAE")
        if not args.name or os.sep in args.name or args.name.startswith("."):
            p.error(f"--name {args.name!r}: give a plain file stem such as vae_long (no folders)")
    return args


def run_name(kind, beta, dataset="mnist"):
    """autoencoder, vae, vae_beta4, ...; prefixed with the dataset unless it is MNIST, so runs never collide."""
    name = "autoencoder" if kind == "autoencoder" else ("vae" if beta == 1 else f"vae_beta{beta:g}")
    return name if dataset == "mnist" else f"{dataset}_{name}"


def keep_previous_checkpoint(path):
    """Move an existing checkpoint to <dir>/previous/<name>-<its date>.pt instead of overwriting it."""
    if not os.path.exists(path):
        return None
    folder, filename = os.path.split(path)
    stem = os.path.splitext(filename)[0]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(path)))
    os.makedirs(os.path.join(folder, "previous"), exist_ok=True)
    target, n = os.path.join(folder, "previous", f"{stem}-{stamp}.pt"), 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(folder, "previous", f"{stem}-{stamp}-{n}.pt")
    os.replace(path, target)
    return target


def lr_factor(step, warmup_steps, total_steps, schedule):
    """Multiplier of --lr at a step: linear warm-up, then cosine decay to zero (or constant)."""
    if schedule == "constant":
        return 1.0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def loss_terms(split_metrics):
    """The losses as the log line shows them: the objective training minimises (the AE's cross-entropy; the
    VAE's recon + beta * kl, or its IWAE bound) and, for a VAE, the -ELBO = recon + kl whatever beta is."""
    m = split_metrics
    if "loss_kl" not in m:
        return f"objective {m['loss_total']:.2f}"
    neg_elbo = m.get("loss_elbo", m["loss_recon"] + m["loss_kl"])
    return f"objective {m['loss_total']:.2f}, -ELBO {neg_elbo:.2f} = recon {m['loss_recon']:.2f} + kl {m['loss_kl']:.2f}"


TAGS = {"loss_total": "objective", "loss_recon": "recon", "loss_kl": "kl", "loss_elbo": "neg_elbo"}


def tagged(split_metrics):
    """The loss terms under the names the reports use (objective, recon, kl, neg_elbo); a VAE's neg_elbo is
    recon + kl whatever its beta, so the runs of a beta sweep compare on it."""
    named = {TAGS.get(k, k): v for k, v in split_metrics.items()}
    if "kl" in named and "neg_elbo" not in named:
        named["neg_elbo"] = named["recon"] + named["kl"]
    return named


def image_grid_pair(inputs, outputs, per_row=16):
    """Inputs and their reconstructions as alternating rows: one CHW image for TensorBoard."""
    rows = []
    for start in range(0, len(inputs), per_row):
        rows += [inputs[start:start + per_row], outputs[start:start + per_row]]
    return data.image_grid(torch.cat(rows), nrow=per_row, pad_value=1)


# where the last completed epoch was saved, for the message when a run is interrupted
last_saved = {}


def random_state(batch_order, device):
    state = {"torch": torch.get_rng_state(), "batch_order": batch_order.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def make_optimizer(model, lr):
    """Adam with its fused kernel (one kernel updates every weight: about 8 % faster per step on a 2-core CPU)
    where the device has it, else the default implementation, said once."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except RuntimeError:  # fused=True is refused at construction on a device without the kernel
        device = next(model.parameters()).device
        cli.say_once(f"note: fused Adam is not available on {device.type} with this PyTorch; using the default Adam")
        return torch.optim.Adam(model.parameters(), lr=lr)


def clip_gradients(model, max_norm, device):
    """Scale the gradients down to a total norm of max_norm if they are above it (--max_grad_norm).

    On the CPU the common step, far below the threshold, only computes the norm: torch's clip_grad_norm_ also
    multiplies every gradient by 1.0, which cost 4-5 % of a step there (benchmarks/speed.py). On a GPU that
    test would wait for the device every step, so torch's clip_grad_norm_ does it all there.
    """
    if device.type == "cpu":
        norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
        if not torch.linalg.vector_norm(torch.stack(norms)) > max_norm:
            return
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def compile_loss(model, example_images):
    """model.loss through torch.compile, run once (forward and backward) on a batch here, so that a
    machine where compiling fails gets an error line now rather than a traceback mid-epoch."""
    loss = torch.compile(model.loss, dynamic=False)  # one fixed-size graph per batch shape (full, last)
    model.train()
    device = example_images.device
    try:
        # fork_rng: the VAE's trial draw must not move the run's random stream
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            loss(example_images)["total"].backward()
    except Exception as e:  # compiler errors come in many types; all mean "cannot compile here"
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"--compile: torch.compile failed on this machine ({first_line[:200]}); "
                            f"train without --compile") from None
    model.zero_grad(set_to_none=True)
    return loss


def train_model(name, model, splits, args, device, evaluate_test=True, resume_from=None):
    """Train one model for args.epochs, checkpointing every epoch; resume_from: an unfinished checkpoint."""
    train_split, val_split = splits["train"], splits["val"]
    model.init_output_bias(train_split.images.mean(0))
    optimizer = make_optimizer(model, args.lr)
    steps_per_epoch = math.ceil(len(train_split) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, total_steps, args.schedule))
    batch_order = torch.Generator().manual_seed(args.seed)
    first_epoch = 1
    checkpoint_path = os.path.join(args.checkpoint_dir, f"{name}.pt")
    if resume_from is not None:
        model.load_state_dict(resume_from["model_state"])
        optimizer.load_state_dict(resume_from["optimizer_state"])
        scheduler.load_state_dict(resume_from["scheduler_state"])
        rng = resume_from["random_state"]
        torch.set_rng_state(rng["torch"])
        batch_order.set_state(rng["batch_order"])
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
        elif device.type == "mps" and "mps" in rng:
            torch.mps.set_rng_state(rng["mps"])
        elif device.type not in rng and device.type != "cpu":
            cli.say_once(f"note: this run was saved on another device; its {device.type} random stream starts afresh, "
                         f"so the result will not match an uninterrupted run bit for bit")
        first_epoch = resume_from["epoch"] + 1
        print(f"{name}: resuming from {checkpoint_path} after epoch {resume_from['epoch']}")

    loss_fn = compile_loss(model, train_split.images[:args.batch_size]) if args.compile else model.loss

    previous_log_dir = (resume_from or {}).get("config", {}).get("log_dir")
    log_dir = previous_log_dir if previous_log_dir and os.path.isdir(previous_log_dir) else make_log_dir(args.logdir, name)
    writer = SummaryWriter(log_dir)
    # fixed inputs for the images logged every epoch, so epochs can be compared picture by picture
    shown_images = val_split.images[:32]
    shown_codes = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
    config = {k: v for k, v in vars(args).items() if k not in ("train_autoencoder", "train_vae", "resume")
              and not (k == "image_size" and v is None)}  # MNIST's configuration as before: no image size
    config["beta"] = getattr(model, "beta", None)
    config["log_dir"] = log_dir  # evaluate.py adds its metrics to this TensorBoard run
    config["training_version"] = TRAINING_VERSION
    train_seconds = (resume_from or {}).get("train_seconds", 0.0)  # this run's, across the invocations that made it
    print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train_split):,} training images, {args.epochs} epochs on {device}; "
          f"TensorBoard run {log_dir}")

    moved_to = None
    val_metrics = {}
    for epoch in range(first_epoch, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        sums, n_seen = {}, 0
        bar = tqdm(total=len(train_split), desc=f"{name} epoch {epoch}/{args.epochs}", unit="img",
                   leave=False, disable=None, file=sys.stderr)
        for step, (images, _) in enumerate(train_split.batches(args.batch_size, shuffle=True, generator=batch_order)):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                terms = loss_fn(images)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if args.max_grad_norm:
                clip_gradients(model, args.max_grad_norm, device)
            optimizer.step()
            scheduler.step()
            # accumulate on the device; reading a value back (.item()) waits for the GPU, so do it rarely
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach() * len(images)
            n_seen += len(images)
            bar.update(len(images))
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sums['total'].item() / n_seen:.2f}")
        bar.close()
        train_metrics = {k: (v / n_seen).item() for k, v in sums.items()}
        if not math.isfinite(train_metrics["total"]):
            raise UserError(f"{name}: the training loss became {train_metrics['total']} in epoch {epoch}; "
                                f"try a smaller --lr. The last good checkpoint is "
                                f"{checkpoint_path if epoch > 1 else 'none (first epoch)'}")
        val_metrics = measures.evaluate_split(model, val_split)
        seconds = time.perf_counter() - start
        train_seconds += seconds

        for k, v in tagged({f"loss_{k}": v for k, v in train_metrics.items()}).items():
            writer.add_scalar(f"train/{k}", v, epoch)
        for k, v in tagged(val_metrics).items():
            writer.add_scalar(f"val/{k}", v, epoch)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch)
        writer.add_scalar("train/seconds_per_epoch", seconds, epoch)
        with torch.no_grad():
            model.eval()
            writer.add_image("val/inputs_and_reconstructions",
                             image_grid_pair(shown_images, model.reconstruct(shown_images)), epoch)
            writer.add_image("samples/decoded_from_N(0,I)",
                             data.image_grid(model.decode(shown_codes), nrow=8, pad_value=1), epoch)
        writer.flush()

        if epoch == 1:
            moved_to = keep_previous_checkpoint(checkpoint_path)
        models.save_checkpoint(
            checkpoint_path, model, epoch=epoch, completed=False, **dataset_entries(args), config=config, optimizer_state=optimizer.state_dict(),
            scheduler_state=scheduler.state_dict(), random_state=random_state(batch_order, device),
            val_metrics=val_metrics, train_seconds=train_seconds)
        last_saved.update(path=checkpoint_path, epoch=epoch)
        print(f"{name} epoch {epoch:2d}/{args.epochs}  train objective {train_metrics['total']:.2f}  "
              f"val {loss_terms(val_metrics)}  pixel acc {100 * val_metrics['pixel_acc_0.5']:.2f}%  {seconds:.1f}s", flush=True)

    if not evaluate_test:  # benchmarks time the epochs alone
        writer.close()
        return val_metrics
    test_metrics = measures.evaluate_split(model, splits["test"])
    # The finished run's checkpoint leaves out the optimizer and schedule state: the schedule has
    # decayed to zero, so there is nothing to resume, and the file shrinks threefold (Adam keeps two
    # numbers per weight), which keeps the committed checkpoints small.
    models.save_checkpoint(checkpoint_path, model, epoch=args.epochs, completed=True, **dataset_entries(args), config=config,
                           val_metrics=val_metrics, test_metrics=test_metrics, train_seconds=train_seconds)
    final = {f"final/val_{k}": v for k, v in tagged(val_metrics).items()} | \
        {f"final/test_{k}": v for k, v in tagged(test_metrics).items()}
    log_hparams(writer, model.kind, config, final, args.epochs)
    writer.close()
    print(f"{name} test  {loss_terms(test_metrics)} nats"
          + f"  pixel acc {100 * test_metrics['pixel_acc_0.5']:.2f}% (0.5) {100 * test_metrics['pixel_acc_0.6']:.2f}% (0.6)"
          + f"  -> {checkpoint_path}" + (f" (previous one kept as {moved_to})" if moved_to else ""))
    return test_metrics


def dataset_entries(args):
    """The checkpoint's dataset entries: its name, and for a user's images where they are and their SHA-256."""
    source = data.data_source(args.dataset, getattr(args, "image_size", None))
    return {"dataset": data.dataset_key(args.dataset)} | ({"data_source": source} if source else {})


def train_one(kind, beta, splits, args, device):
    """Train one model as the command line asks (with args.resume: continue its unfinished run).

    Returns the checkpoint's path and the test metrics.
    """
    name = args.name or run_name(kind, beta, data.dataset_key(args.dataset))
    model_args = dict(hidden_dims=args.hidden_dims, latent_dim=args.latent_dim, activation=args.activation,
                      image_shape=tuple(splits["train"].images.shape[1:]))
    if kind == "vae":
        model_args["beta"] = beta
        if args.iwae_k > 1:
            model_args["iwae_k"] = args.iwae_k
    path = os.path.join(args.checkpoint_dir, f"{name}.pt")
    # one writer per checkpoint: a second train.py, study or worker on the same path gets an error line naming us
    with WriterLock(path):
        run_args, resume_from = args, None
        if args.resume:
            resume_from = unfinished_checkpoint(path, args)
            model_args = resume_from["model_args"]
            if tuple(model_args.get("image_shape", models.IMAGE_SHAPE)) != tuple(splits["train"].images.shape[1:]):
                raise UserError(f"{path}: this run trained on images of {model_args.get('image_shape')}; resume it "
                                f"with the same images and --image_size")
            run_args = argparse.Namespace(**{**vars(args), **{k: v for k, v in resume_from["config"].items()
                                                              if k in RESUMED_SETTINGS + ("max_grad_norm", "precision")}})
        torch.manual_seed(run_args.seed)  # each model starts from the same seed, whatever trained before it
        model = models.build_model(kind, **model_args).to(device)
        test_metrics = train_model(name, model, splits, run_args, device, resume_from=resume_from)
    return path, test_metrics


# Bump when a change to training (models.py's losses, this loop, data.py's batches) can move a trained weight:
# study.py then retrains its runs instead of reusing them. tests/test_stage_versions.py fails when those files
# change until the fingerprint is re-recorded (docs/study.md, "Caches that cannot go stale").
TRAINING_VERSION = 1

# what --resume takes from the checkpoint rather than from the command line (and max_grad_norm and precision;
# study.py's runner compares these and every other setting that changes a run: runner.checkpoint_state)
RESUMED_SETTINGS = ("dataset", "epochs", "batch_size", "lr", "schedule", "seed", "hidden_dims", "latent_dim", "activation")

# every setting that makes two runs different experiments rather than two seeds of one (evaluate.py groups
# checkpoints by it to report a recipe's mean over seeds)
RECIPE_SETTINGS = tuple(k for k in RESUMED_SETTINGS if k != "seed") + (
    "max_train_images", "precision", "max_grad_norm", "compile", "training_version")


def recipe_of(checkpoint):
    """What a checkpoint's run was, apart from its seed: its model and every setting of RECIPE_SETTINGS."""
    config = {"precision": "fp32", "compile": False} | {k: v for k, v in (checkpoint.get("config") or {}).items()
                                                        if v is not None}  # older files: their defaults
    return repr((checkpoint["kind"], sorted(checkpoint["model_args"].items()),
                 [(k, config.get(k)) for k in RECIPE_SETTINGS]))


def unfinished_checkpoint(path, args):
    if not os.path.exists(path):
        raise UserError(f"{path}: no such checkpoint, nothing to resume; start the run without --resume")
    checkpoint = models.read_checkpoint(path)
    if checkpoint.get("completed", True) or "random_state" not in checkpoint:
        raise UserError(f"{path}: this run is finished (or was saved without its training state); "
                            f"nothing to resume — start a new run without --resume")
    saved_subset = checkpoint["config"].get("max_train_images")
    if saved_subset != args.max_train_images:
        raise UserError(f"{path}: this run trained with --max_train_images {saved_subset}; resume with the same")
    return checkpoint


def stop_on_sigterm(signum, frame):
    # SIGTERM (kill, a job scheduler) takes the same path as Ctrl-C: the last epoch's checkpoint is kept
    raise KeyboardInterrupt("terminated")



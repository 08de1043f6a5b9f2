"""The training loop: one model, checkpointed after every epoch, resumable bit for bit on the CPU.

train.py calls train_one for each model the command line asks for; the study's runner (runner.py) too.
"""
import math
import os
import sys
import time

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import data
import models
from lab import cli, config, measures
from lab.config import TRAINING_VERSION, TrainConfig  # noqa: F401 (TRAINING_VERSION: the stage's version, read here)
from lab.files import UserError, WriterLock
from lab.provenance import code_state
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
    config.add_flags(g, TrainConfig, ["latent_dim", "hidden_dims", "activation", "posterior_scale", "init"])
    g.add_argument("--beta", type=cli.non_negative_float, nargs="+", default=[1.0], metavar="B",
                   help="weight of the VAE's KL term; several values train one VAE each "
                        "(default: 1, the plain ELBO)")
    config.add_flags(g, TrainConfig, ["iwae_k"])
    g = p.add_argument_group("optimisation")
    config.add_flags(g, TrainConfig, ["epochs", "patience", "batch_size", "lr", "schedule", "max_grad_norm", "seed"])
    g = p.add_argument_group("files and hardware")
    config.add_flags(g, TrainConfig, ["dataset", "image_size", "data_dir", "checkpoint_dir", "name", "logdir"])
    cli.add_device_arguments(g)
    config.add_flags(g, TrainConfig, ["threads", "precision", "compile"])
    g.add_argument("--resume", action="store_true",
                   help="continue each named model's unfinished run from its checkpoint (weights, optimizer, "
                        "schedule, epoch, random state) with the settings stored there; model and optimisation "
                        "flags are then ignored. On the CPU the result equals an uninterrupted run bit for bit")
    config.add_flags(g, TrainConfig, ["max_train_images"])
    args = p.parse_args(argv)
    if args.image_size and args.dataset in data.DATASETS:
        p.error(f"--image_size resizes your own images (--dataset PATH); {args.dataset}'s are 28 x 28")
    if not (args.train_autoencoder or args.train_vae):
        p.error("nothing to train: give --train_autoencoder and/or --train_vae")
    if args.patience and args.schedule == "cosine":
        p.error("--patience stops a run early, but the cosine schedule is laid out over all --epochs: "
                "give --schedule constant with it")
    if args.iwae_k > 1 and (args.beta != [1.0] or not args.train_vae):
        p.error("--iwae_k is the VAE's objective with beta 1: give --train_vae without other --beta values")
    if args.name is not None:
        if int(args.train_autoencoder) + (len(args.beta) if args.train_vae else 0) != 1:
            p.error("--name names one model: train either the AutoEncoder or one VAE")
        if not args.name or os.sep in args.name or args.name.startswith("."):
            p.error(f"--name {args.name!r}: give a plain file stem such as vae_long (no folders)")
    return args


def configs_of(args):
    """One TrainConfig per model the command line asks for: the AutoEncoder, then a VAE per --beta value."""
    models_asked = ([("autoencoder", None)] if args.train_autoencoder else []) + \
        ([("vae", b) for b in args.beta] if args.train_vae else [])
    # the VAE's own settings are the AutoEncoder's defaults for it, as from_checkpoint reads its file
    return [config.from_args(TrainConfig, args, kind=kind, beta=beta, iwae_k=args.iwae_k if kind == "vae" else 1,
                             posterior_scale=args.posterior_scale if kind == "vae" else "logvar")
            for kind, beta in models_asked]


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



def random_state(batch_order, device):
    state = {"torch": torch.get_rng_state(), "batch_order": batch_order.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def make_optimizer(model, lr):
    """Adam with its fused kernel (one kernel updates every weight: about 8 % faster per step on a 2-core CPU)
    where the device has it, else the default implementation, with a note (each run's log then says which)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except RuntimeError:  # fused=True is refused at construction on a device without the kernel
        device = next(model.parameters()).device
        cli.note(f"note: fused Adam is not available on {device.type} with this PyTorch; using the default Adam")
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


class LossNotFinite(UserError):
    """The training loss became inf or nan: the run stops; its last good epoch stays saved."""


class RunStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run (args[0]: "interrupted" or "terminated"); saved: (path, epoch) of its last
    completed epoch, or None when none was."""
    saved = None


def restore_training_state(checkpoint, model, optimizer, scheduler, batch_order, device):
    """Put an unfinished run's weights, optimizer, schedule and random streams back; returns its next epoch."""
    model.load_state_dict(checkpoint["model_state"])
    optimizer.load_state_dict(checkpoint["optimizer_state"])
    scheduler.load_state_dict(checkpoint["scheduler_state"])
    rng = checkpoint["random_state"]
    torch.set_rng_state(rng["torch"])
    batch_order.set_state(rng["batch_order"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
    elif device.type == "mps" and "mps" in rng:
        torch.mps.set_rng_state(rng["mps"])
    elif device.type not in rng and device.type != "cpu":
        cli.note(f"note: this run was saved on another device; its {device.type} random stream starts afresh, "
                 f"so the result will not match an uninterrupted run bit for bit")
    return checkpoint["epoch"] + 1


def train_epoch(name, epoch, model, train_split, run, device, optimizer, scheduler, batch_order, loss_fn):
    """One pass over the training images; the mean of each loss term over the epoch."""
    model.train()
    sums, n_seen = {}, 0
    bar = tqdm(total=len(train_split), desc=f"{name} epoch {epoch}/{run.epochs}", unit="img",
               leave=False, disable=None, file=sys.stderr)
    for step, (images, _) in enumerate(train_split.batches(run.batch_size, shuffle=True, generator=batch_order)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
            terms = loss_fn(images)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if run.max_grad_norm:
            clip_gradients(model, run.max_grad_norm, device)
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
    return {k: (v / n_seen).item() for k, v in sums.items()}


HISTORY_IMAGES = 2000  # validation images whose 2-D codes every run keeps after each epoch (8 KB an epoch in float16)
HISTORY_SEED = 0  # the draw that picks them: the same images for every run of a dataset


def history_index(val_split):
    """The validation images whose codes a run keeps epoch by epoch: a seeded draw of its own generator, so that
    no run's random stream moves; sorted, so the frames list them in the dataset's order."""
    n = min(HISTORY_IMAGES, len(val_split))
    return torch.randperm(len(val_split), generator=torch.Generator().manual_seed(HISTORY_SEED))[:n].sort().values


class CodeHistory:
    """The codes of a fixed set of validation images after every epoch ("watch the latent spaces form"), kept in
    the checkpoint as code_history: {"index", "labels", "epochs", "codes": epochs x images x 2, float16}. Only
    2-D models keep one. Encoding is deterministic (the VAE: posterior means) and draws no random number."""

    def __init__(self, model, val_split, resumed=None):
        self.model, self.index = model, history_index(val_split)
        self.images = val_split.images[self.index.to(val_split.images.device)]
        self.state = resumed or {"index": self.index.to(torch.int32), "labels": val_split.labels[self.index.to(
            val_split.labels.device)].cpu().to(torch.int16), "epochs": [], "codes": torch.zeros(0, len(self.index), 2,
                                                                                                dtype=torch.float16)}

    @torch.no_grad()
    def add(self, epoch):
        self.model.eval()
        codes = models.encode_in_batches(self.model, self.images).cpu()
        self.state = {**self.state, "epochs": self.state["epochs"] + [epoch],
                      "codes": torch.cat([self.state["codes"], codes.to(torch.float16)[None]])}
        return codes

    def box(self):
        """TensorBoard's fixed axes for this run so far: [-B, B]², B a power of two >= 4 holding 99.9 % of every
        epoch's codes; it only ever grows, and then by doubling, so frames compare across epochs."""
        reach = float(torch.quantile(self.state["codes"].float().abs().flatten(), 0.999))
        return 2.0 ** max(2, math.ceil(math.log2(max(reach, 1e-9))))


class EpochLog:
    """The TensorBoard run of one model: scalars and, from fixed inputs so epochs compare picture by picture, a
    reconstruction strip and decoded N(0, I) samples after every epoch."""

    def __init__(self, log_dir, model, val_split, device, class_names=None):
        self.writer = SummaryWriter(log_dir)
        self.class_names = class_names
        self.shown_images = val_split.images[:32]
        self.shown_codes = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)

    def replay(self, kind, history):
        """Every epoch's scatter of a finished run under latent/codes_on_fixed_axes, all on one box: the one that
        holds 99.9 % of every epoch's codes (the live frames' box could only grow as the run went)."""
        from lab.figures import codes_figure, history_limit
        limit = history_limit(history["codes"])
        for epoch, codes in zip(history["epochs"], history["codes"]):
            self.writer.add_figure("latent/codes_on_fixed_axes", codes_figure(
                codes, history["labels"].long(), kind, f"epoch {epoch}", limit, class_names=self.class_names,
                size=(4.4, 4.0), dpi=72), epoch)

    @torch.no_grad()
    def epoch(self, epoch, model, train_metrics, val_metrics, lr, seconds, codes=None, labels=None, box=None):
        for k, v in tagged({f"loss_{k}": v for k, v in train_metrics.items()}).items():
            self.writer.add_scalar(f"train/{k}", v, epoch)
        for k, v in tagged(val_metrics).items():
            self.writer.add_scalar(f"val/{k}", v, epoch)
        self.writer.add_scalar("train/lr", lr, epoch)
        self.writer.add_scalar("train/seconds_per_epoch", seconds, epoch)
        model.eval()
        self.writer.add_image("val/inputs_and_reconstructions",
                              image_grid_pair(self.shown_images, model.reconstruct(self.shown_images)), epoch)
        self.writer.add_image("samples/decoded_from_N(0,I)",
                              data.image_grid(model.decode(self.shown_codes), nrow=8, pad_value=1), epoch)
        if codes is not None:  # the latent plane: how far the codes spread, and the scatter itself
            self.writer.add_scalar("latent/code_norm_p99", torch.quantile(codes.float().norm(dim=1), 0.99).item(), epoch)
            from lab.figures import codes_figure
            figure = codes_figure(codes, labels.long(), model.kind, title=f"epoch {epoch}", limit=box,
                                  class_names=self.class_names, size=(4.4, 4.0), dpi=72)
            self.writer.add_figure("latent/codes_of_validation_images", figure, epoch)
        self.writer.flush()


class EarlyStopping:
    """--patience: the best epoch so far by the validation objective, with its weights, and when to stop."""

    def __init__(self, patience, saved=None):
        self.patience = patience
        self.best = saved or {"epoch": 0, "objective": math.inf}  # a resumed run's, from its checkpoint

    def stopped_before(self, epoch):
        """A resumed run that had already stopped before this epoch."""
        return bool(self.patience) and epoch - 1 - self.best["epoch"] >= self.patience

    def after_epoch(self, epoch, model, val_metrics):
        """Keep this epoch if it is the best; True when the run should stop here."""
        if not self.patience:
            return False
        if val_metrics["loss_total"] < self.best["objective"]:
            self.best = {"epoch": epoch, "objective": val_metrics["loss_total"], "val_metrics": val_metrics,
                         "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        return epoch - self.best["epoch"] >= self.patience

    def why_stopped(self, epoch):
        return (f"no better validation objective for {self.patience} epochs: stopped after epoch {epoch}, keeping "
                f"epoch {self.best['epoch']}'s weights ({self.best['objective']:.2f} nats)")

    def checkpoint_entries(self):
        return {"early_stopping": self.best} if self.patience else {}

    def best_epoch(self):
        return self.best["epoch"] if self.patience and "weights" in self.best else None

    def restore_best(self, name, model, val_metrics):
        """The model as validation chose it (the best epoch's weights) and that epoch's validation measures."""
        if self.best_epoch() is not None:
            model.load_state_dict(self.best["weights"])
            return self.best["val_metrics"]
        if self.patience:  # no epoch's validation objective was a number: nothing to choose from
            cli.note(f"{name}: no epoch had a finite validation objective; keeping the last epoch's weights")
        return val_metrics


def check_finite(name, epoch, train_metrics, checkpoint_path):
    if not math.isfinite(train_metrics["total"]):
        raise LossNotFinite(f"{name}: the training loss became {train_metrics['total']} in epoch {epoch}; "
                            f"try a smaller --lr. The last good checkpoint is "
                            f"{checkpoint_path if epoch > 1 else 'none (first epoch)'}")


def optimizer_and_schedule(model, run, steps_per_epoch):
    """Adam and its learning-rate schedule over the run's steps."""
    optimizer = make_optimizer(model, run.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, steps_per_epoch * run.epochs, run.schedule))
    return optimizer, scheduler


def epoch_log_of(name, model, val_split, run, device, resume_from):
    """The run's TensorBoard log (a resumed run goes on in its own folder) and its codes' history (2-D codes)."""
    previous_log_dir = (resume_from or {}).get("config", {}).get("log_dir")
    log_dir = previous_log_dir if previous_log_dir and os.path.isdir(previous_log_dir) else make_log_dir(run.logdir, name)
    log = EpochLog(log_dir, model, val_split, device, data.class_names_of(run.dataset, run.image_size))
    history = CodeHistory(model, val_split, (resume_from or {}).get("code_history")) if model.latent_dim == 2 else None
    return log_dir, log, history


def train_model(name, model, splits, run, device, evaluate_test=True, resume_from=None):
    """Train one model as the TrainConfig `run` says, checkpointing every epoch; resume_from: an unfinished
    checkpoint. Ctrl-C or SIGTERM raise RunStopped, which says which epoch was saved last."""
    train_split, val_split = splits["train"], splits["val"]
    if run.init == "tensorflow":
        models.tensorflow_init(model)
    else:
        model.init_output_bias(train_split.images.mean(0))
    optimizer, scheduler = optimizer_and_schedule(model, run, math.ceil(len(train_split) / run.batch_size))
    batch_order = torch.Generator().manual_seed(run.seed)
    first_epoch = 1
    checkpoint_path = os.path.join(run.checkpoint_dir, f"{name}.pt")
    if resume_from is not None:
        first_epoch = restore_training_state(resume_from, model, optimizer, scheduler, batch_order, device)
        print(f"{name}: resuming from {checkpoint_path} after epoch {resume_from['epoch']}")
    loss_fn = compile_loss(model, train_split.images[:run.batch_size]) if run.compile else model.loss
    log_dir, log, history = epoch_log_of(name, model, val_split, run, device, resume_from)
    stored = config.as_checkpoint_dict(run, log_dir=log_dir)  # log_dir: evaluate.py adds its metrics to this run
    code = (resume_from or {}).get("code") or code_state()  # the code that trained the run (its first invocation's)
    train_seconds = (resume_from or {}).get("train_seconds", 0.0)  # this run's, across the invocations that made it
    print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train_split):,} training images, {run.epochs} epochs on {device}; TensorBoard run {log_dir}")

    moved_to, saved, val_metrics = None, None, {}
    if resume_from is not None:
        saved = (checkpoint_path, resume_from["epoch"])
    stopping = EarlyStopping(run.patience, (resume_from or {}).get("early_stopping"))
    epoch = first_epoch - 1
    try:
        for epoch in range(first_epoch, run.epochs + 1):
            if stopping.stopped_before(epoch):
                epoch -= 1
                break
            start = time.perf_counter()
            train_metrics = train_epoch(name, epoch, model, train_split, run, device, optimizer, scheduler,
                                        batch_order, loss_fn)
            check_finite(name, epoch, train_metrics, checkpoint_path)
            val_metrics = measures.evaluate_split(model, val_split)
            seconds = time.perf_counter() - start
            train_seconds += seconds
            codes = history.add(epoch) if history else None
            log.epoch(epoch, model, train_metrics, val_metrics, optimizer.param_groups[0]["lr"], seconds, codes,
                      history.state["labels"] if history else None, history.box() if history else None)
            stop_here = stopping.after_epoch(epoch, model, val_metrics)
            if epoch == 1:
                moved_to = keep_previous_checkpoint(checkpoint_path)
            models.save_checkpoint(
                checkpoint_path, model, epoch=epoch, completed=False, **dataset_entries(run), config=stored,
                optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                random_state=random_state(batch_order, device), val_metrics=val_metrics, train_seconds=train_seconds,
                code=code, **({"code_history": history.state} if history else {}), **stopping.checkpoint_entries())
            saved = (checkpoint_path, epoch)
            print(f"{name} epoch {epoch:2d}/{run.epochs}  train objective {train_metrics['total']:.2f}  "
                  f"val {loss_terms(val_metrics)}  pixel acc {100 * val_metrics['pixel_acc_0.5']:.2f}%  {seconds:.1f}s",
                  flush=True)
            if stop_here:
                print(f"{name}: {stopping.why_stopped(epoch)}", flush=True)
                break
        val_metrics = stopping.restore_best(name, model, val_metrics)
        if not evaluate_test:  # benchmarks time the epochs alone
            log.writer.close()
            return val_metrics
        return finish_run(name, model, splits, run, checkpoint_path, stored, val_metrics, train_seconds, log,
                          moved_to, code, history, epochs_trained=epoch, best_epoch=stopping.best_epoch())
    except KeyboardInterrupt as stop:
        stopped = RunStopped(*(stop.args or ("interrupted",)))
        stopped.saved = saved
        raise stopped from None


def finish_run(name, model, splits, run, checkpoint_path, stored, val_metrics, train_seconds, log, moved_to, code,
               history=None, epochs_trained=None, best_epoch=None):
    """The test set's losses, the finished run's checkpoint and its HPARAMS summary; returns the test metrics.
    epochs_trained: where early stopping ended the run (default: run.epochs); best_epoch: whose weights it kept."""
    epochs_trained = epochs_trained or run.epochs
    test_metrics = measures.evaluate_split(model, splits["test"])
    # The finished run's checkpoint leaves out the optimizer and schedule state: the schedule has
    # decayed to zero, so there is nothing to resume, and the file shrinks threefold (Adam keeps two
    # numbers per weight), which keeps the committed checkpoints small.
    models.save_checkpoint(checkpoint_path, model, epoch=epochs_trained, completed=True, **dataset_entries(run),
                           config=stored, val_metrics=val_metrics, test_metrics=test_metrics, train_seconds=train_seconds,
                           code=code, **({"code_history": history.state} if history else {}),
                           **({"best_epoch": best_epoch} if best_epoch is not None else {}))
    final = {f"final/val_{k}": v for k, v in tagged(val_metrics).items()} | \
        {f"final/test_{k}": v for k, v in tagged(test_metrics).items()}
    log_hparams(log.writer, model.kind, stored, final, epochs_trained)
    if history:  # the whole run's frames once more, on the axes its last epoch needs: frames that compare exactly
        log.replay(model.kind, history.state)
    log.writer.close()
    print(f"{name} test  {loss_terms(test_metrics)} nats"
          + f"  pixel acc {100 * test_metrics['pixel_acc_0.5']:.2f}% (0.5) {100 * test_metrics['pixel_acc_0.6']:.2f}% (0.6)"
          + f"  -> {checkpoint_path}" + (f" (previous one kept as {moved_to})" if moved_to else ""))
    return test_metrics


def dataset_entries(run):
    """The checkpoint's dataset entries: its name, and for a user's images where they are and their SHA-256."""
    source = data.data_source(run.dataset, run.image_size)
    return {"dataset": data.dataset_key(run.dataset)} | ({"data_source": source} if source else {})


def train_one(run, splits, device, resume=False):
    """Train one model as its TrainConfig says (resume: continue its unfinished run, with the recipe stored in
    the checkpoint and the files and hardware of `run`). Returns the checkpoint's path and the test metrics."""
    name = run.name or run_name(run.kind, run.beta, data.dataset_key(run.dataset))
    path = os.path.join(run.checkpoint_dir, f"{name}.pt")
    # one writer per checkpoint: a second train.py, study or worker on the same path gets an error line naming us
    with WriterLock(path):
        resume_from = None
        if resume:
            resume_from = unfinished_checkpoint(path, run)
            if tuple(resume_from["model_args"].get("image_shape", models.IMAGE_SHAPE)) != tuple(splits["train"].images.shape[1:]):
                raise UserError(f"{path}: this run trained on images of {resume_from['model_args'].get('image_shape')}; "
                                f"resume it with the same images and --image_size")
            files = {k: getattr(run, k) for k in config.values(run, (config.FILES,))}
            run = config.replace(config.from_checkpoint(resume_from), **files)
            model_args = resume_from["model_args"]
        else:
            model_args = dict(hidden_dims=list(run.hidden_dims), latent_dim=run.latent_dim, activation=run.activation,
                              image_shape=tuple(splits["train"].images.shape[1:]))
            if run.kind == "vae":
                model_args["beta"] = run.beta
                if run.iwae_k > 1:
                    model_args["iwae_k"] = run.iwae_k
                if run.posterior_scale != "logvar":
                    model_args["posterior_scale"] = run.posterior_scale
        torch.manual_seed(run.seed)  # each model starts from the same seed, whatever trained before it
        model = models.build_model(run.kind, **model_args)
        test_metrics = train_model(name, model.to(device), splits, run, device, resume_from=resume_from)
    return path, test_metrics


def recipe_of(checkpoint):
    """What a checkpoint's run was, apart from its seed (evaluate.py groups checkpoints by it to report a recipe's
    mean over seeds): its model's arguments and the recipe fields of its TrainConfig."""
    return repr((checkpoint["kind"], sorted(checkpoint["model_args"].items()),
                 sorted(config.recipe(config.from_checkpoint(checkpoint)).items())))


def unfinished_checkpoint(path, run):
    if not os.path.exists(path):
        raise UserError(f"{path}: no such checkpoint, nothing to resume; start the run without --resume")
    checkpoint = models.read_checkpoint(path)
    if checkpoint.get("completed", True) or "random_state" not in checkpoint:
        raise UserError(f"{path}: this run is finished (or was saved without its training state); "
                            f"nothing to resume — start a new run without --resume")
    saved_subset = checkpoint["config"].get("max_train_images")
    if saved_subset != run.max_train_images:
        raise UserError(f"{path}: this run trained with --max_train_images {saved_subset}; resume with the same")
    return checkpoint


def stop_on_sigterm(signum, frame):
    # SIGTERM (kill, a job scheduler) takes the same path as Ctrl-C: the last epoch's checkpoint is kept
    raise KeyboardInterrupt("terminated")



"""The typed configurations: one dataclass per concept, and the one place that says what identifies what.

    TrainConfig   one training run: its recipe (what is trained), its seed, and its files and hardware
    EvalConfig    what an evaluation's numbers depend on

Each field's metadata holds its role and its command-line flag. A run's identity (two checkpoints are the same
run when it is equal), a recipe (seeds of one experiment share it) and an evaluation's cache key are computed
from the roles alone, never from a hand-kept list; the flags of train.py and evaluate.py are generated from the
same fields (add_flags), so each flag is defined once. A checkpoint stores its TrainConfig whole
(as_checkpoint_dict); every older file's configuration is read through one function (from_checkpoint).
"""
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace  # noqa: F401 (replace: for callers)

import data
import models
from lab import cli

RECIPE = "recipe"  # changes what is trained: two runs that differ here are different experiments
SEED = "seed"      # which run of a recipe: part of a run's identity, not of its recipe
FILES = "files"    # where files go and how fast it runs: changes no trained weight on a CPU
CACHE = "cache"    # an EvalConfig field that can move an evaluation's numbers

# Bump when a change to training (models.py's losses, the training loop, data.py's batches) can move a trained
# weight: the study then retrains its runs instead of reusing them (it is part of every run's identity).
# tests/test_stage_versions.py fails when that code changes until its fingerprint is re-recorded.
TRAINING_VERSION = 1


def setting(default, role, flag=True, **argparse_kwargs):
    """A configuration field: its default, its role, and (flag=True) its command-line flag --<name>, made by
    argparse from argparse_kwargs (help, type, choices, nargs, metavar; aliases=(...) for other spellings)."""
    return field(default=default, metadata={"role": role, "flag": flag, "argparse": argparse_kwargs})


@dataclass(frozen=True)
class TrainConfig:
    # the model
    kind: str = setting("vae", RECIPE, flag=False)  # train.py: --train_autoencoder / --train_vae
    latent_dim: int = setting(2, RECIPE, type=cli.positive_int,
                              help="size of the latent code (default: %(default)s; the figures need 2)")
    hidden_dims: tuple = setting((256, 256, 256), RECIPE, type=cli.positive_int, nargs="+", metavar="N",
                                 aliases=("--hidden_dim",),
                                 help="hidden layer sizes of the encoder; the decoder mirrors them (default: 256 256 256)")
    activation: str = setting("gelu", RECIPE, choices=sorted(models.ACTIVATIONS),
                              help="nonlinearity between layers (default: %(default)s)")
    posterior_scale: str = setting("logvar", RECIPE, choices=list(models.POSTERIOR_SCALES),
                                   help="how the VAE's encoder gives its posterior's scale: logvar, its output is log "
                                        "sigma^2; softplus, sigma is the softplus of its output (Davidson et al. 2018's "
                                        "code) (default: %(default)s)")
    beta: float = setting(1.0, RECIPE, flag=False)  # None for the AutoEncoder; train.py's --beta takes several
    iwae_k: int = setting(1, RECIPE, type=cli.positive_int, metavar="K",
                          help="train the VAE on the importance-weighted bound with K samples per image (Burda et al. "
                               "2016); 1 is the plain ELBO. Costs about K times the decoder's work; beta must be 1 "
                               "(default: %(default)s)")
    init: str = setting("pytorch", RECIPE, choices=["pytorch", "tensorflow"],
                        help="initial weights: pytorch, PyTorch's defaults with the decoder's output bias at the mean "
                             "training image; tensorflow, Glorot-uniform weights and zero biases (TensorFlow's "
                             "defaults, as in Davidson et al. 2018's s-vae-tf) (default: %(default)s)")
    # optimisation
    epochs: int = setting(20, RECIPE, type=cli.positive_int,
                          help="passes over the 55 000 training images (default: %(default)s)")
    batch_size: int = setting(256, RECIPE, type=cli.positive_int,
                              help="images per step; 256 keeps a CPU's matrix units busier than 64 or 128 and, with "
                                   "the peak --lr of 3e-3, loses no quality in 20 epochs (default: %(default)s)")
    lr: float = setting(3e-3, RECIPE, type=cli.positive_float, help="peak learning rate of Adam (default: %(default)s)")
    schedule: str = setting("cosine", RECIPE, choices=["cosine", "constant"],
                            help="cosine: linear warm-up over the first epoch, then cosine decay to zero; "
                                 "constant: --lr throughout (default: %(default)s)")
    max_grad_norm: float = setting(1e4, RECIPE, type=cli.non_negative_float, metavar="N",
                                   help="clip the gradient's total norm to N; 0: never. A run's norms stay below ~700, "
                                        "so this only acts on a rare batch whose VAE log-variance blows up (a loss of "
                                        "1e10 and more), which would otherwise swell Adam's step statistics and stall "
                                        "the rest of the run; a run it never acts on is bit for bit the same "
                                        "(default: %(default)g)")
    patience: int = setting(None, RECIPE, type=cli.positive_int, metavar="N",
                            help="early stopping: end the run once the validation objective has not improved for N "
                                 "epochs, and keep the weights of its best epoch (--epochs is then the most it may "
                                 "train; pair it with --schedule constant, as the cosine schedule is laid out over "
                                 "--epochs). Default: train every epoch, keep the last")
    seed: int = setting(0, SEED, type=cli.non_negative_int,
                        help="the training seed: weights, batch order and the VAE's draws (default: %(default)s)")
    # the data
    dataset: str = setting("mnist", RECIPE, type=cli.dataset_argument,
                           metavar="{mnist,binarized-mnist,fashion-mnist,PATH}",
                           help="mnist (bundled); binarized-mnist (the same images with every pixel sampled to 0 or 1 "
                                "with its grey level as probability: afresh for each training batch, once with a fixed "
                                "seed for validation and test -- the form papers report likelihoods in); fashion-mnist "
                                "(from Debian's dataset-fashion-mnist, else --data_dir, else downloaded); or "
                                + cli.DATASET_HELP + ", split 80/10/10 into train/validation/test by a fixed seed. "
                                "Checkpoints of other datasets than mnist are named <dataset>_<model>.pt "
                                "(default: %(default)s)")
    image_size: tuple = setting(None, RECIPE, type=cli.positive_int, nargs=2, metavar=("H", "W"),
                                help="resize a PATH dataset's images to H x W (needed when their sizes differ; "
                                     "default: as they are)")
    max_train_images: int = setting(None, RECIPE, type=cli.positive_int, metavar="N",
                                    help="train on the first N training images only, for a quick look "
                                         "(default: all 55 000)")
    # numerics that can change a trained weight
    precision: str = setting("fp32", RECIPE, choices=["fp32", "bf16"],
                             help="bf16: the training steps' matrix products in bfloat16 (autocast; weights, optimizer, "
                                  "validation and test stay float32), faster where the processor multiplies bf16 "
                                  "natively; its cost in nats is in docs/speed.md. The committed results use fp32 "
                                  "(default: %(default)s)")
    compile: bool = setting(False, RECIPE, action="store_true",
                            help="compile the loss and its gradient with torch.compile (needs a C++ compiler on the "
                                 "CPU). Off by default: on a 2-core CPU steps get ~7 %% faster, but compiling costs "
                                 "more than the 20-epoch default run gains (it ended 10-30 s later); see docs/speed.md")
    training_version: int = setting(TRAINING_VERSION, RECIPE, flag=False)
    # files and hardware
    data_dir: str = setting("data", FILES, help="folder holding <dataset>/raw/ (default: %(default)s)")
    checkpoint_dir: str = setting("checkpoints", FILES, help="where checkpoints go (default: %(default)s)")
    name: str = setting(None, FILES, help="file stem of the checkpoint and TensorBoard run, for one model only "
                                          "(default: autoencoder, vae, vae_beta<B>, prefixed with <dataset>_ unless mnist)")
    logdir: str = setting("logs", FILES, help="where TensorBoard runs go (default: %(default)s)")
    threads: int = setting(None, FILES, type=cli.positive_int,
                           help="CPU threads for PyTorch (default: PyTorch's choice, one per physical core)")

    def __post_init__(self):
        # lists from the command line or an older checkpoint: tuples, so that equal configurations compare equal
        if isinstance(self.hidden_dims, (list, tuple)):
            object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))


@dataclass(frozen=True)
class EvalConfig:
    split: str = setting("test", CACHE, choices=["test", "val"],
                         help="score on the 10 000 test images, or on the 5 000 validation images (held out from "
                              "training; for choosing a recipe without looking at the test set): reports get a _val "
                              "suffix (default: %(default)s)")
    iwae_draws: int = setting(1000, CACHE, type=cli.positive_int, aliases=("--iwae_k",),
                              help="draws per image for the VAE's -ELBO and IWAE bound, the same draws for both "
                                   "(default: %(default)s; --iwae_k is its old spelling)")
    iwae_images: int = setting(10000, CACHE, type=cli.positive_int,
                               help="test images for the -ELBO, the IWAE bound and the quadrature (all on the same "
                                    "images); fewer for a quick run (default: all %(default)s)")
    quadrature: bool = setting(False, CACHE, action="store_true",
                               help="also compute the 2-D VAE's -log p(x) itself, by integrating over the latent plane "
                                    "(a grid on [-6, 6]², widened up to [-32, 32]² for posteriors reaching further, "
                                    "fine only where each image's likelihood lies; each image's step starts at 0.02 or "
                                    "its posterior's width and is halved until two steps agree within 0.01 nats, the "
                                    "largest disagreement reported as quadrature_step_error_nats); the -ELBO and IWAE "
                                    "numbers are upper bounds on it")
    likelihood: bool = setting(True, CACHE, flag=False)  # False: no -ELBO, IWAE or quadrature (a study may skip them)
    num_samples: int = setting(10000, CACHE, type=cli.positive_int,
                               help="N(0, I) codes decoded and judged per model (default: %(default)s)")
    grid_range: float = setting(1.5, CACHE, type=cli.positive_float, help="latent grid on [-R, R]² (default: %(default)s)")
    grid_size: int = setting(20, CACHE, type=cli.positive_int, help="grid points per side (default: %(default)s)")
    sample_seed: int = setting(0, CACHE, type=cli.non_negative_int, aliases=("--seed",),
                               help="seed of every sample an evaluation draws (default: %(default)s; --seed is its "
                                    "old spelling)")


# ---- what identifies what: computed from the roles ----

def values(config, roles):
    """{name: value} of the config's fields whose role is one of roles (the dataset by its name, not its PATH)."""
    found = {f.name: getattr(config, f.name) for f in fields(config) if f.metadata["role"] in roles}
    if "dataset" in found:
        found["dataset"] = data.dataset_key(found["dataset"])
    return found


def identity(config):
    """What makes two checkpoints the same run: every recipe field and the seed."""
    return values(config, (RECIPE, SEED))


def recipe(config):
    """What makes runs seeds of one experiment: every recipe field (not the seed)."""
    return values(config, (RECIPE,))


def cache_key(config):
    return values(config, (CACHE,))


# ---- checkpoints ----

def as_checkpoint_dict(config, **extra):
    """The config as a checkpoint stores it: every field (tuples as lists), plus extra (the TensorBoard run)."""
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    return stored | extra


# what files written before a field existed were trained with (their field is absent)
OLDER_FILES = {"precision": "fp32", "compile": False, "max_grad_norm": 0.0, "training_version": 0, "image_size": None,
               "max_train_images": None, "iwae_k": 1, "threads": None, "name": None, "patience": None,
               "posterior_scale": "logvar", "init": "pytorch"}


UNKNOWN = "unknown: not recorded in this older file"


def from_checkpoint(checkpoint):
    """The TrainConfig of a checkpoint, whatever its age: the one upgrade function every reader goes through.

    Files before typed configs stored train.py's whole argparse namespace: its keys are the field names (plus
    a few that are not fields, such as use_cuda and device, which changed no weight and are dropped); the model
    kind, beta and the IWAE objective are taken from the model's own arguments, which every file has."""
    stored = dict(checkpoint.get("config") or {})
    known = {f.name for f in fields(TrainConfig)}
    kept = {k: v for k, v in (OLDER_FILES | stored).items() if k in known}
    # a recipe field the file does not record, and whose value for older files is not known: never today's
    # default, which would make the file the same run as one of a recipe it may not have been trained with
    for f in fields(TrainConfig):
        if f.metadata["role"] in (RECIPE, SEED) and f.name not in kept and f.name not in ("kind", "beta", "dataset"):
            kept[f.name] = UNKNOWN
    kept["kind"] = checkpoint["kind"]
    model_args = checkpoint.get("model_args", {})
    kept["beta"] = model_args.get("beta", 1.0) if checkpoint["kind"] == "vae" else None
    kept["iwae_k"] = model_args.get("iwae_k", 1)
    kept["posterior_scale"] = model_args.get("posterior_scale", "logvar")
    kept.setdefault("dataset", checkpoint.get("dataset", "mnist"))
    return TrainConfig(**kept)


# ---- command lines ----

def add_flags(parser, config_class, names=None, defaults=None, helps=None):
    """Add the flags of config_class's fields (those named, in that order; default: every field with a flag),
    with the field's default unless defaults ({name: value}) gives the script's own, and its help unless helps
    ({name: text}) says what the flag does in this script (its type, choices and spelling stay the field's)."""
    by_name = {f.name: f for f in fields(config_class)}
    for name in names or [f.name for f in fields(config_class) if f.metadata["flag"]]:
        f = by_name[name]
        kwargs = dict(f.metadata["argparse"]) | ({"help": helps[name]} if name in (helps or {}) else {})
        aliases = kwargs.pop("aliases", ())
        default = (defaults or {}).get(name, f.default if f.default is not MISSING else None)
        parser.add_argument(f"--{name}", *aliases, dest=name,
                            default=list(default) if isinstance(default, tuple) else default, **kwargs)


def from_args(config_class, args, **overrides):
    """A config_class from an argparse namespace: every field the namespace has, then overrides."""
    given = {f.name: getattr(args, f.name) for f in fields(config_class) if hasattr(args, f.name)}
    return config_class(**(given | overrides))


def deprecated_spellings(argv, config_class):
    """The old spellings (aliases) used in argv, to say once that they are deprecated."""
    used = []
    for f in fields(config_class):
        for alias in f.metadata["argparse"].get("aliases", ()):
            if any(a == alias or a.startswith(alias + "=") for a in argv or []):
                used.append((alias, f"--{f.name}"))
    return used




@dataclass(frozen=True)
class StudyConfig:
    """How an experiment's runs are made: where their files live, how they are trained (quick: the smoke test's
    tiny recipe) and evaluated (an EvalConfig), and what runs them (jobs worker processes here, or the Dask
    scheduler at `scheduler`). Each run computes with `threads` CPU threads wherever it lands, so its numbers do
    not depend on the machine that ran it (None: PyTorch's choice, for runs in this process)."""
    checkpoint_dir: str = "checkpoints"
    data_dir: str = "data"
    logdir: str = os.path.join("logs", "study")
    dataset_specs: tuple = ()  # ((name, what loads it: the name itself, or a user's PATH), ...)
    quick: bool = False
    device: str = "cpu"
    jobs: int = 1
    threads: int = None
    scheduler: str = None
    command: str = None
    evaluation: EvalConfig = EvalConfig()
    runs_folder: str = "study"  # under checkpoint_dir: the runs other than the default pair, and their caches
    keep_failed_runs: bool = False  # a run whose loss became non-finite is a record (the confirmatory plan's rule)

    def dataset_spec(self, dataset):
        return dict(self.dataset_specs).get(dataset, dataset)

    def train_config(self, kind, dataset, seed, beta, folder):
        """The TrainConfig of one of the experiment's runs: the default recipe; only kind, dataset, seed and beta
        vary (with quick: 1 epoch on 1000 images)."""
        quick = dict(epochs=1, max_train_images=1000) if self.quick else {}
        return TrainConfig(kind=kind, beta=None if kind == "autoencoder" else (1.0 if beta is None else beta),
                           seed=seed, dataset=self.dataset_spec(dataset), checkpoint_dir=folder,
                           data_dir=self.data_dir, logdir=self.logdir, **quick)

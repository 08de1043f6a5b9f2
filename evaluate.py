"""Measure what the figures only show: one table of numbers for every checkpoint.

    python evaluate.py --train_classifier     # once: the digit classifier that judges samples
    python evaluate.py                        # the MNIST checkpoints/*.pt -> readme/metrics.{json,md}
    python evaluate.py --dataset fashion-mnist   # -> readme/metrics_fashion-mnist.{json,md}

All numbers are on the 10 000 MNIST test images (losses in nats per image). See metrics.py for
what each one means and README.md for how to read them.
"""
import json
import os
import shlex
import sys
import time

import torch

import cli
import data
import metrics
import models
from explore_latent_space import dataset_prefix, encode_in_batches, latent_grid, load_selected_checkpoints, output_name

CLASSIFIER_PATH = os.path.join("checkpoints", "judges", "{dataset}_cnn.pt")
CLASSIFIER_ACCURACY_BAR = 0.985


@torch.no_grad()
def classifier_accuracy(classifier, split):
    correct = sum((classifier(images).argmax(1) == labels).sum().item() for images, labels in split.batches(1000))
    return correct / len(split)


def train_classifier(splits, epochs=3, batch_size=128, lr=1e-3, seed=0):
    """Train the judge: the small CNN of models.py, Adam, a few epochs on the 55 000 training images."""
    torch.manual_seed(seed)
    classifier = models.DigitClassifier().to(splits["train"].images.device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        classifier.train()
        for images, labels in splits["train"].batches(batch_size, shuffle=True, generator=order):
            loss = torch.nn.functional.cross_entropy(classifier(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        classifier.eval()
        print(f"classifier epoch {epoch}/{epochs}  validation accuracy {100 * classifier_accuracy(classifier, splits['val']):.2f}%",
              flush=True)
    return classifier


@torch.no_grad()
def evaluate_model(model, splits, classifier, args):
    """Every metric of one trained AE or VAE, as a flat dict."""
    test = splits[getattr(args, "split", "test")]
    device = test.images.device
    generator = torch.Generator().manual_seed(args.seed)  # on the CPU: the same samples on every device
    result = {f"test_{k}": v for k, v in metrics.evaluate(model, test).items() if k.startswith("loss_")}
    if "test_loss_elbo" in result:  # trained on the IWAE bound: the table's row is the -ELBO, like every VAE's
        result["test_loss_training_bound"] = result["test_loss_total"]
        result["test_loss_total"] = result.pop("test_loss_elbo")
    result |= metrics.reconstruction_metrics(metrics.reconstruct_in_batches(model, test.images), test.images)
    if model.kind == "vae":
        n = args.iwae_images
        result[f"iwae_nll_k{args.iwae_k}"] = metrics.iwae_nll_of_split(model, test.images[:n], k=args.iwae_k, seed=args.seed)
        result["iwae_images"] = min(n, len(test))
        if getattr(args, "quadrature", False) and model.latent_dim == 2:
            result["quadrature_nll"] = metrics.quadrature_nll(model, test.images[:n]).mean().item()
    train_codes = encode_in_batches(model, splits["train"].sample_images())
    test_codes = encode_in_batches(model, test.images)
    result["knn5_accuracy"] = metrics.knn_accuracy(train_codes, splits["train"].labels, test_codes, test.labels, k=5)
    result |= metrics.prior_match(test_codes, seed=args.seed)

    prior_codes = torch.randn(args.num_samples, model.latent_dim, generator=generator).to(device)
    result |= {f"prior_samples_{k}": v for k, v in metrics.judge_samples(classifier, model.decode(prior_codes)).items()}
    if model.latent_dim == 2:
        grid = latent_grid(args.grid_range, args.grid_size).to(device)
        result["grid_confident"] = metrics.judge_samples(classifier, model.decode(grid))["confident"]
    if model.kind == "autoencoder":
        # the fair way to sample an AutoEncoder: a Gaussian fitted to its training codes
        mean, covariance = train_codes.mean(0), torch.cov(train_codes.T).reshape(model.latent_dim, model.latent_dim)
        fitted = mean + torch.randn(args.num_samples, model.latent_dim, generator=generator).to(device) @ torch.linalg.cholesky(covariance).T
        result |= {f"fitted_gaussian_samples_{k}": v
                   for k, v in metrics.judge_samples(classifier, model.decode(fitted)).items()}
    return result


ROWS = [  # (key, label, format): the order of the Markdown table
    ("test_loss_total", "cross-entropy (AE) / negative ELBO (VAE), nats", "{:.2f}"),
    ("test_loss_kl", "  of which KL, nats", "{:.2f}"),
    ("test_loss_training_bound", "  the importance-weighted bound it was trained on, nats", "{:.2f}"),
    ("iwae_nll", "IWAE estimate of −log p(x), nats", "{:.2f}"),
    ("quadrature_nll", "−log p(x) by quadrature over the latent plane, nats", "{:.2f}"),
    ("pixel_acc_0.5", "pixel accuracy, threshold 0.5", "{:.2%}"),
    ("pixel_acc_0.6", "pixel accuracy, threshold 0.6", "{:.2%}"),
    ("ink_f1", "ink F1 (pixels > 0.5)", "{:.3f}"),
    ("ink_iou", "ink IoU (pixels > 0.5)", "{:.3f}"),
    ("knn5_accuracy", "5-NN class accuracy from the codes", "{:.2%}"),
    ("code_mean_norm", "‖mean of test codes‖ (0 for N(0, I))", "{:.2f}"),
    ("code_cov_distance_to_identity", "‖covariance of test codes − I‖", "{:.2f}"),
    ("mmd2_to_prior", "MMD² between test codes and N(0, I)", "{:.4f}"),
    ("prior_samples_confident", "N(0, I) samples judged confident (≥ 0.9)", "{:.1%}"),
    ("prior_samples_class_entropy_bits", "  entropy of their classes, bits (max 3.32)", "{:.2f}"),
    ("grid_confident", "[−1.5, 1.5]² grid images judged confident", "{:.1%}"),
    ("fitted_gaussian_samples_confident", "samples of a Gaussian fitted to training codes, confident", "{:.1%}"),
    ("fitted_gaussian_samples_class_entropy_bits", "  entropy of their classes, bits", "{:.2f}"),
]


def markdown_table(results, baseline, iwae_k, dataset="mnist", split="test"):
    names = list(results)
    titles = {"auto": "AutoEncoder", "vae": "VAE"}
    short = [n[len(dataset_prefix(dataset)):] if n.startswith(dataset_prefix(dataset)) else n for n in names]
    lines = [f"| {'validation' if split == 'val' else 'test'} set | " + " | ".join(titles.get(n, n) for n in short) + " | all-black image |", "|---" * (len(names) + 2) + "|"]
    for key, label, fmt in ROWS:
        lookup = f"iwae_nll_k{iwae_k}" if key == "iwae_nll" else key
        if key == "iwae_nll":
            label = f"IWAE estimate of −log p(x), k = {iwae_k}, nats"
        cells = [fmt.format(results[n][lookup]) if lookup in results[n] else "–" for n in names]
        if not any(c != "–" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + (fmt.format(baseline[key]) if key in baseline else "–") + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = cli.ArgumentParser(
        prog="evaluate.py",
        description="Compute every metric of the README for each checkpoint on the 10 000 test images and write "
                    "<output_dir>/metrics.json and metrics.md. Generated images are judged by a small CNN digit "
                    f"classifier ({CLASSIFIER_PATH.replace('{dataset}', '<dataset>')}); --train_classifier (re)trains it first.")
    cli.add_checkpoint_arguments(p)
    p.add_argument("-o", "--output_dir", default="readme", help="where metrics.json and metrics.md go (default: %(default)s)")
    p.add_argument("--dataset", choices=sorted(data.DATASETS), default="mnist",
                   help="evaluate the checkpoints of --checkpoint_dir trained on this dataset (stored in each file); "
                        "results go to metrics.json/.md for mnist, metrics_<dataset>.json/.md otherwise; "
                        "binarized-mnist is judged by the mnist classifier (default: %(default)s)")
    p.add_argument("--classifier", default=None,
                   help=f"the judge's checkpoint (default: {CLASSIFIER_PATH.replace('{dataset}', '<dataset>')})")
    p.add_argument("--train_classifier", action="store_true",
                   help="train the judge (3 epochs, about a minute on a CPU) and save it to --classifier first")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="score on the 10 000 test images, or on the 5 000 validation images (held out from training; "
                        "for choosing a recipe without looking at the test set): reports get a _val suffix "
                        "(default: %(default)s)")
    p.add_argument("--iwae_k", type=cli.positive_int, default=1000,
                   help="importance samples per image for the VAE's IWAE bound (default: %(default)s)")
    p.add_argument("--iwae_images", type=cli.positive_int, default=10000,
                   help="test images for the IWAE bound; fewer for a quick run (default: all %(default)s)")
    p.add_argument("--quadrature", action="store_true",
                   help="also compute the 2-D VAE's -log p(x) itself, by integrating over the latent plane (a "
                        "601 x 601 grid on [-6, 6]²; about a minute for 10 000 images on 2 CPU cores); the IWAE "
                        "number is an upper bound on it")
    p.add_argument("--num_samples", type=cli.positive_int, default=10000,
                   help="N(0, I) codes decoded and judged per model (default: %(default)s)")
    p.add_argument("--grid_range", type=cli.positive_float, default=1.5, help="latent grid on [-R, R]² (default: %(default)s)")
    p.add_argument("--grid_size", type=cli.positive_int, default=20, help="grid points per side (default: %(default)s)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of every sample drawn (default: %(default)s)")
    cli.add_device_arguments(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        device = cli.resolve_device(args)
        loaded = load_selected_checkpoints(args, device)
        for path, model in loaded.items():
            if model.kind not in ("autoencoder", "vae"):
                raise cli.UserError(f"{path}: a {model.kind} checkpoint, not an AutoEncoder or VAE")
        datasets = {model.dataset for model in loaded.values()}
        if len(datasets) > 1:
            raise cli.UserError(f"the checkpoints given were trained on {' and '.join(sorted(datasets))}; "
                                f"evaluate one dataset at a time")
        dataset = datasets.pop()
        judge_dataset = data.DATASETS[dataset].judge or dataset  # binarized-mnist: the MNIST judge
        args.classifier = args.classifier or CLASSIFIER_PATH.format(dataset=judge_dataset)
        cli.writable_dir(args.output_dir)
        splits = data.load_dataset(dataset, args.data_dir, device)
        if args.train_classifier:
            cli.writable_dir(os.path.dirname(args.classifier) or ".")
            judge_splits = splits if judge_dataset == dataset else data.load_dataset(judge_dataset, args.data_dir, device)
            classifier = train_classifier(judge_splits)
            accuracy = classifier_accuracy(classifier, judge_splits["test"])
            models.save_checkpoint(args.classifier, classifier, test_accuracy=accuracy)
            print(f"classifier test accuracy {100 * accuracy:.2f}% -> {args.classifier}")
        classifier = models.load_checkpoint(args.classifier, map_location=device)
        if classifier.kind != "classifier":
            raise cli.UserError(f"{args.classifier}: a {classifier.kind} checkpoint, not the digit classifier")
        results = {}
        for path, model in loaded.items():
            t = time.perf_counter()
            name = output_name(path, dataset)
            results[name] = evaluate_model(model, splits, classifier, args)
            add_to_tensorboard_run(path, model.kind, results[name])
            print(f"{name}: evaluated in {time.perf_counter() - t:.1f}s", flush=True)
        baseline = metrics.all_black_baseline(splits["test"].images)
        command = "python evaluate.py" + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        report = {"command": command, "dataset": dataset, "split": args.split,
                  "classifier_test_accuracy": classifier_accuracy(classifier, splits["test"]),
                  "models": results, "all_black_baseline": baseline}
        table = markdown_table(results, baseline, args.iwae_k, dataset, args.split)
        stem = ("metrics" if dataset == "mnist" else f"metrics_{dataset}") + ("_val" if args.split == "val" else "")
        cli.write_atomically(os.path.join(args.output_dir, f"{stem}.json"), json.dumps(report, indent=2) + "\n")
        cli.write_atomically(os.path.join(args.output_dir, f"{stem}.md"),
                         f"Measured by `{command}` ({dataset} {args.split} set; classifier judging the samples: "
                         f"{100 * report['classifier_test_accuracy']:.2f}% test accuracy).\n\n{table}")
        print(table)
    except (cli.UserError, data.DataError, models.CheckpointError) as e:
        cli.exit_with_error(str(e))
    except OSError as e:  # the machine's fault, not the user's: a full disk, a read-only or vanished folder
        cli.exit_with_error(cli.os_error_message(e))
    print(f"metrics written to {args.output_dir}/{stem}.json and {stem}.md in {time.perf_counter() - started:.1f}s")


def add_to_tensorboard_run(checkpoint_path, kind, result):
    """Append the metrics to the TensorBoard run that trained this checkpoint, if that run is here."""
    config = models.read_checkpoint(checkpoint_path).get("config") or {}
    log_dir = config.get("log_dir")
    if not log_dir or not os.path.isdir(log_dir):
        return
    from torch.utils.tensorboard import SummaryWriter
    from train import log_hparams
    with SummaryWriter(log_dir) as writer:
        log_hparams(writer, kind, config, {f"eval/{k}": v for k, v in result.items()}, config.get("epochs", 0))



if __name__ == "__main__":
    main()
